"""What the benchmark parts make of their calls: latencies, failures, phases, CPU per call;
and the ways they call (in sequence, the first call that must succeed)."""

import os
from collections import Counter
from typing import Any

from bench.client import CallResult, invoke, phases_ms
from bench.functions import FunctionDef
from bench.platform import BenchPlatform
from bench.stats import summary


def latencies(calls: list[CallResult]) -> list[float]:
    return [c.latency_ms for c in calls if c.ok]


def failures(calls: list[CallResult]) -> dict[str, Any]:
    bad = [c for c in calls if not c.ok]
    return {
        "count": len(bad),
        "statuses": dict(Counter(c.status for c in bad)),
        "examples": [{"id": c.call_id, "status": c.status, "error": c.error} for c in bad[:5]],
    }


def phase_medians(calls: list[CallResult]) -> dict[str, float]:
    phases = [p for c in calls if c.ok and (p := phases_ms(c)) is not None]
    if not phases:
        return {}
    return {k: float(summary([p[k] for p in phases])["p50"]) for k in phases[0]}


def cpu_groups(p: BenchPlatform) -> dict[str, list[int]]:
    groups = {name: [pid] for name, pid in p.platform.pids().items()}
    groups["bench (client + log relay)"] = [os.getpid()]
    return groups


def per_call_ms(cpu_s: dict[str, float], calls: int) -> dict[str, float]:
    return {k: round(v * 1000 / calls, 3) for k, v in cpu_s.items()} if calls else {}


async def sequential(p: BenchPlatform, fn: FunctionDef, n: int) -> list[CallResult]:
    assert p.calls is not None
    return [await invoke(p.calls, fn.name, {"i": i}) for i in range(n)]


async def first_call(p: BenchPlatform, fn: FunctionDef) -> CallResult:
    """One call to get everything cached (artifact, image, pool demand); must succeed."""
    assert p.calls is not None
    first = await invoke(p.calls, fn.name, {"first": True})
    if not first.ok:
        raise RuntimeError(f"the first call of {fn.name} under {p.policy} failed: {first}; see {p.log_path}")
    return first
