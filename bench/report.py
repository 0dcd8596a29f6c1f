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


COLD_FLOOR_RATIO = 1.3
WARM_RUNTIME_P50_MS = 30.0
WARM_FUNCTION_P50_MS = 3.0
THROUGHPUT_PER_S = 1000.0
# adaptive (issue targets): ratios to floors measured in the same run
FIRST_CALL_FLOOR_RATIO = 0.1
BURST_FLOOR_RATIO = 0.2
ADAPTIVE_WARM_P50_MS = 2.0
ADAPTIVE_WARM_P99_MS = 8.0
ECHO_SHARE = 0.22


# --- the benchmark's results as table rows -------------------------------------------
def note_of(r: dict[str, Any], cold: bool = True) -> str:
    parts = []
    if cold and r.get("cold_calls"):
        parts.append(f"{r['cold_calls']} cold")
    if r["failures"]["count"]:
        parts.append(f"{r['failures']['count']} failed: {r['failures']['statuses']}")
    return "; ".join(parts)


def p50_row(name: str, part: dict[str, Any], limit_ms: float, note: str) -> Row:
    """A latency row judged by its p50 against ``limit_ms``."""
    latency = part["latency"]
    return Row(name, latency, target=f"p50 <= {limit_ms:g} ms", ok=at_most(latency.get("p50"), limit_ms), note=note)


def rows_of(res: dict[str, Any]) -> list[Row]:
    fl = res["floors"]
    container_floor = res["none"]["floor"] if "none" in res else fl["container"]
    rows = [Row("floor: container create+start+wait+remove", container_floor)]
    if "none" in res:
        rows.append(Row("  same, NetworkDisabled (as the agent)", res["none"]["floor_network_disabled"]))
    rows += [
        Row("floor: JSON line round trip (attached stdio)", fl["json_line"]),
        Row("floor: one-shot process on stdin, to exit (wait)", fl["one_shot_wait"]),
    ]
    floor = container_floor["p50"]
    if (cold := res.get("none")) is not None:
        p50 = cold["latency"].get("p50")
        ratio = p50 / floor if p50 is not None else None
        strict = cold.get("floor_network_disabled", {}).get("p50")
        strict_note = f"{p50 / strict:.2f}x the NetworkDisabled floor" if p50 and strict else ""
        rows.append(
            Row(
                "none: cold call (command), HTTP sync",
                cold["latency"],
                target=f"p50 <= {COLD_FLOOR_RATIO}x floor = {COLD_FLOOR_RATIO * floor:.0f} ms",
                ok=at_most(ratio, COLD_FLOOR_RATIO),
                note="; ".join(
                    x for x in (f"{ratio:.2f}x floor" if ratio else "", strict_note, note_of(cold, False)) if x
                ),
            )
        )
    if (rt := res.get("warm-runtime")) is not None:
        for name, part in (("no deps (command)", rt), ("handler", rt.get("handler"))):
            if part is None:
                continue
            note = "; ".join(x for x in ("back to back", note_of(part)) if x)
            rows.append(p50_row(f"warm-runtime: {name}, HTTP sync", part, WARM_RUNTIME_P50_MS, note))
            rows.append(Row("  of which served warm", part["latency_served_warm"]))
            if (paced := part.get("paced")) is not None:
                name = "  paced: each call once the pool is refilled"
                rows.append(p50_row(name, paced, WARM_RUNTIME_P50_MS, note_of(paced)))
    if (wf := res.get("warm-function")) is not None:
        rows.append(p50_row("warm-function: handler, HTTP sync", wf, WARM_FUNCTION_P50_MS, note_of(wf)))
        floor = wf.get("pipeline_floor") or {}
        for mode, what in (("bare", "core NATS request"), ("durable", "stream + pull + ack + durable event")):
            if floor.get(mode):
                rows.append(
                    Row(
                        f"floor: HTTP -> {what}, {floor['concurrency']} clients",
                        {},
                        unit="calls/s",
                        value=floor[mode],
                    )
                )
        for level in wf["throughput"]:
            of_floor = (
                f"; {level['calls_per_s'] / floor['durable']:.2f}x the durable floor"
                if floor.get("durable") and level["concurrency"] == floor["concurrency"]
                else ""
            )
            # One client waits for each answer: its rate is 1/latency, which the p50 target
            # covers; the throughput target is for concurrent clients.
            concurrent = level["concurrency"] > 1
            rows.append(
                Row(
                    f"warm-function throughput, {level['concurrency']} clients",
                    {"n": level["calls"]},
                    unit="calls/s",
                    value=level["calls_per_s"],
                    target=f">= {THROUGHPUT_PER_S:g} calls/s" if concurrent else "",
                    ok=at_least(level["calls_per_s"], THROUGHPUT_PER_S) if concurrent else None,
                    note=f"latency p50 {level['latency'].get('p50', 0):.1f} ms"
                    + ("" if concurrent else " (one client: 1/latency)")
                    + of_floor
                    + (f"; {n}" if (n := note_of(level)) else ""),
                )
            )
    if (ad := res.get("adaptive")) is not None:
        rows += adaptive_rows(ad)
    return rows


def adaptive_rows(ad: dict[str, Any]) -> list[Row]:
    """The adaptive policy (the default): targets as ratios to floors measured in the run."""
    floor = ad["floor"].get("p50")

    def of_floor(part: dict[str, Any], ratio: float, what: str) -> Row:
        p50 = part["latency"].get("p50")
        r = p50 / floor if p50 is not None and floor else None
        limit = f" = {ratio * floor:.0f} ms" if floor else ""
        note = "; ".join(x for x in (f"{r:.2f}x floor" if r is not None else "", served_note(part)) if x)
        ok = at_most(r, ratio) if not part["failures"]["count"] else False
        return Row(what, part["latency"], target=f"p50 <= {ratio}x floor{limit}", ok=ok, note=note)

    warm = ad["warm"]["latency"]
    warm_ok = None
    if warm.get("p50") is not None:
        warm_ok = bool(at_most(warm["p50"], ADAPTIVE_WARM_P50_MS) and at_most(warm.get("p99"), ADAPTIVE_WARM_P99_MS))
    level, echo = ad["throughput"], ad["echo_floor"]["calls_per_s"]
    share = level["calls_per_s"] / echo if echo else None
    burst_n = ad["burst"]["latency"].get("n")
    return [
        Row("adaptive: floor (NetworkDisabled), same run", ad["floor"]),
        of_floor(ad["first_call"], FIRST_CALL_FLOOR_RATIO, "adaptive: first call of a new handler function"),
        Row(
            "adaptive: warm sequential calls, HTTP sync",
            warm,
            target=f"p50 <= {ADAPTIVE_WARM_P50_MS:g} ms, p99 <= {ADAPTIVE_WARM_P99_MS:g} ms",
            ok=warm_ok,
            note=served_note(ad["warm"]),
        ),
        of_floor(ad["burst"], BURST_FLOOR_RATIO, f"adaptive: burst of {burst_n} first calls, new functions"),
        Row(f"floor: aiohttp echo, {ad['echo_floor']['concurrency']} clients", {}, unit="calls/s", value=echo),
        Row(
            f"adaptive throughput, {level['concurrency']} clients",
            {"n": level["calls"]},
            unit="calls/s",
            value=level["calls_per_s"],
            target=f">= {ECHO_SHARE}x the echo floor",
            ok=at_least(share, ECHO_SHARE),
            note=(f"{share:.2f}x the echo floor; " if share else "") + f"p50 {level['latency'].get('p50', 0):.1f} ms",
        ),
    ]


def served_note(part: dict[str, Any]) -> str:
    counts = part.get("served") or {}
    fails = part["failures"]["count"]
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + (f"; {fails} FAILED" if fails else "")


# --- main -------------------------------------------------------------------------------
