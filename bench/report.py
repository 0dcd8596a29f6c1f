"""The benchmark's table: figures, targets, PASS/MISS (pure formatting, no I/O)."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    name: str
    stats: dict[str, float] = field(default_factory=dict)  # n, p50, p95, p99 (ms) ...
    unit: str = "ms"
    value: float | None = None  # a single figure (calls/s) instead of percentiles
    target: str = ""
    ok: bool | None = None  # None: no target
    note: str = ""

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(rows: list[Row]) -> str:
    """A fixed-width text table; also valid Markdown (pipes), so the doc can quote it."""
    head = ["measure", "n", "p50", "p95", "p99", "unit", "target", "result", "note"]
    lines = [head]
    for r in rows:
        if r.value is not None:
            cells = [fmt(r.value), "", ""]
        else:
            cells = [fmt(r.stats.get(k)) for k in ("p50", "p95", "p99")]
        n = r.stats.get("n")
        lines.append([r.name, "" if n is None else str(int(n)), *cells, r.unit, r.target, r.verdict, r.note])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {1, 2, 3, 4}

    def render(line: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":" if i in right else "-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit
