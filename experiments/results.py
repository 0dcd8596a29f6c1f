"""One CSV row per call: writing as the experiment goes, reading for plots (pure I/O)."""

import csv
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass
class CallRow:
    policy: str
    function: str
    language: str
    protocol: str  # command | handler
    deps: bool
    pattern: str  # prepare | sequential | burst | poisson
    call_index: int
    call_id: str
    submitted: float  # epoch seconds
    finished: float
    latency_ms: float
    status: str  # DONE | ERROR | TIMEOUT | HTTP_<code> | CLIENT_ERROR
    start: str  # cold (the call got a container of its own) | warm | "" (unknown)
    container: str = ""
    served: str = ""  # the call record's: cold | stem | warm ("" when it did not say)
    error: str = ""
    gateway_in_ms: float | None = None
    queue_ms: float | None = None
    agent_run_ms: float | None = None
    return_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "DONE"

    @property
    def cold(self) -> bool:
        return self.start == "cold"


FIELDS = [f.name for f in fields(CallRow)]
_FLOATS = {"submitted", "finished", "latency_ms", "gateway_in_ms", "queue_ms", "agent_run_ms", "return_ms"}


def _cell(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if name in _FLOATS and isinstance(value, float):
        return f"{value:.6f}" if name in ("submitted", "finished") else f"{value:.3f}"
    return str(value)


def _parse(name: str, raw: str) -> object:
    if name == "deps":
        return raw in ("1", "true", "True")
    if name == "call_index":
        return int(raw)
    if name in _FLOATS:
        return float(raw) if raw != "" else None
    return raw


class CsvWriter:
    """Appends rows to ``path`` (header written once, when the file is new or empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            with path.open("w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(FIELDS)

    def append(self, rows: Iterable[CallRow]) -> int:
        n = 0
        with self.path.open("a", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            for row in rows:
                d = asdict(row)
                w.writerow([_cell(k, d[k]) for k in FIELDS])
                n += 1
        return n


def read_rows(path: Path) -> Iterator[CallRow]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(FIELDS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a calls CSV (missing columns: {', '.join(sorted(missing))})")
        for rec in reader:
            yield CallRow(**{k: _parse(k, rec[k]) for k in FIELDS})  # type: ignore[arg-type]
