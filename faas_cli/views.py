"""What each listing shows: its columns, and how a value of the API's JSON reads as text.

Columns pick keys out of the API's records (a dotted key reaches into a nested object); a
record the gateway answers with more keys is still shown, its extra keys left out of lists.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

# "id": shown whole on one line, never wrapped (it is copied into the next command)
Kind = Literal["text", "id", "status", "time", "ms", "seconds", "bytes", "bool", "counts", "json"]


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    kind: Kind = "text"


VIEWS: dict[str, tuple[Column, ...]] = {
    "runtimes": (
        Column("NAME", "name"),
        Column("IMAGE", "image"),
        Column("PATH", "path"),
        Column("RUN", "run"),
        Column("DEPENDENCIES", "dependencies"),
        Column("HANDLER COMMAND", "handler_command"),
    ),
    "functions": (
        Column("NAME", "name"),
        Column("VERSION", "version"),
        Column("RUNTIME", "runtime"),
        Column("HANDLER", "handler"),
        Column("DEPS", "has_dependencies", "bool"),
        Column("SIZE", "size", "bytes"),
        Column("TIMEOUT", "limits.timeout_s", "seconds"),
        Column("MEMORY MB", "limits.memory_mb"),
        Column("CREATED", "created_at", "time"),
    ),
    "versions": (Column("VERSION", "version"), Column("LATEST", "latest", "bool")),
    "calls": (
        Column("#", "number"),
        Column("ID", "id", "id"),
        Column("FUNCTION", "function"),
        Column("VERSION", "version"),
        Column("STATUS", "status", "status"),
        Column("SERVED", "served"),
        Column("DURATION", "duration_ms", "ms"),
        Column("NODE", "node", "id"),
        Column("CREATED", "created_at", "time"),
    ),
    "jobs": (
        Column("#", "number"),
        Column("ID", "id", "id"),
        Column("NAME", "name"),
        Column("IMAGE", "image"),
        Column("PRI", "priority"),
        Column("STATUS", "status", "status"),
        Column("EXIT", "result.exit_code"),
        Column("DURATION", "result.duration_ms", "ms"),
        Column("NODE", "node", "id"),
        Column("CREATED", "created_at", "time"),
    ),
    "nodes": (
        Column("NODE", "node_id", "id"),
        Column("FRESH", "fresh", "bool"),
        Column("AGE", "age_s", "seconds"),
        Column("POLICY", "policy"),
        Column("SLOTS", "slots"),
        Column("FREE", "free"),
        Column("RUNTIMES", "runtimes"),
        Column("WARM RUNTIMES", "warm_runtimes", "counts"),
        Column("WARM FUNCTIONS", "warm_functions", "counts"),
    ),
    "tokens": (
        Column("NAME", "name"),
        Column("ROLE", "role"),
        Column("CREATED", "created_at", "time"),
        Column("EXPIRES", "expires_at", "time"),
        Column("EXPIRED", "expired", "bool"),
    ),
}

# How a record's field is read when it is shown alone (``faas call ID``, ``function describe``).
FIELD_KINDS: dict[str, Kind] = {
    "status": "status",
    "duration_ms": "ms",
    "size": "bytes",
    "age_s": "seconds",
    "timeout_s": "seconds",
    # what the user's code takes and gives: always as JSON, never "a, b"
    "params": "json",
    "result": "json",
    "metadata": "json",
}


def pick(record: Any, key: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None where a part is missing."""
    value = record
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def kind_of(key: str) -> Kind:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in FIELD_KINDS:
        return FIELD_KINDS[leaf]
    if leaf.endswith("_at") or leaf == "at":
        return "time"
    return "text"


def flatten(record: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A record's fields in the API's order, nested objects as dotted keys (``limits.cpus``);
    an empty object stays one field."""
    out: list[tuple[str, Any]] = []
    for key, value in record.items():
        if isinstance(value, dict) and value and key not in {"params", "result", "metadata", "env"}:
            out.extend(flatten(value, f"{prefix}{key}."))
        else:
            out.append((prefix + key, value))
    return out


def _time(value: str, short: bool) -> str:
    try:
        when = datetime.fromisoformat(value).astimezone()
    except ValueError:
        return value
    if short:
        return when.strftime("%H:%M:%S" if when.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def text(value: Any, kind: Kind = "text", short: bool = False) -> str:
    """A value as one line of text; ``-`` for none. ``short``: a time of today as its time of
    day (the tables' narrow columns), local time either way."""
    if value is None or (kind != "json" and value in ("", [], {})):
        return "-"
    if kind == "time" and isinstance(value, str):
        return _time(value, short)
    if kind == "ms" and isinstance(value, int | float):
        return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"
    if kind == "seconds" and isinstance(value, int | float):
        return f"{round(value, 1):g} s"
    if kind == "bytes" and isinstance(value, int):
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value} B"
    if kind == "bool" or isinstance(value, bool):
        return "yes" if value else "no"
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if kind == "counts" and isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
