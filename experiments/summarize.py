"""Summary statistics of a calls CSV per (policy, function, pattern) (pure)."""

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.stats import summary
from experiments.results import CallRow

MEASURED = ("sequential", "burst", "poisson")  # "prepare" calls are not part of the results


@dataclass
class Group:
    policy: str
    function: str
    pattern: str
    calls: int
    failed: int
    cold: int
    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    max_ms: float | None

    @property
    def cold_share(self) -> float:
        return self.cold / self.calls if self.calls else 0.0


def measured(rows: Iterable[CallRow]) -> list[CallRow]:
    return [r for r in rows if r.pattern in MEASURED]


def groups(rows: Iterable[CallRow], by: tuple[str, ...] = ("policy", "function", "pattern")) -> list[Group]:
    """One :class:`Group` per distinct key; a key field left out of ``by`` is ``"*"``.
    Latencies are over the calls that succeeded."""
    buckets: dict[tuple[str, str, str], list[CallRow]] = defaultdict(list)
    for r in rows:
        key = tuple(getattr(r, k) if k in by else "*" for k in ("policy", "function", "pattern"))
        buckets[key] += [r]  # type: ignore[index]
    out = []
    for (policy, function, pattern), rs in buckets.items():
        s = summary([r.latency_ms for r in rs if r.ok])
        out.append(
            Group(
                policy=policy,
                function=function,
                pattern=pattern,
                calls=len(rs),
                failed=sum(not r.ok for r in rs),
                cold=sum(r.cold for r in rs),
                p50_ms=s.get("p50"),
                p95_ms=s.get("p95"),
                mean_ms=s.get("mean"),
                max_ms=s.get("max"),
            )
        )
    return sorted(out, key=lambda g: (g.policy, g.function, g.pattern))


def write_summary(path: Path, gs: list[Group]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        names = [*asdict(gs[0]).keys(), "cold_share"] if gs else []
        w.writerow(names)
        for g in gs:
            d = asdict(g)
            w.writerow([f"{v:.2f}" if isinstance(v, float) else v for v in d.values()] + [f"{g.cold_share:.3f}"])


def text_table(gs: list[Group]) -> str:
    head = ["policy", "function", "pattern", "calls", "failed", "cold", "p50 ms", "p95 ms", "mean ms"]
    lines = [head]
    for g in gs:
        lines.append(
            [
                g.policy,
                g.function,
                g.pattern,
                str(g.calls),
                str(g.failed),
                f"{g.cold} ({g.cold_share:.0%})",
                *("-" if v is None else f"{v:.1f}" for v in (g.p50_ms, g.p95_ms, g.mean_ms)),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]

    def render(line: list[str]) -> str:
        cells = (c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        return "| " + " | ".join(cells) + " |"

    return "\n".join(render(line) for line in lines)
