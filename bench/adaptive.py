"""The adaptive policy against its targets, on one fresh platform with the default policy.

* first call of a newly deployed handler function, each with a container floor measured
  just before it (the same machine state): p50 <= 0.1x the floor;
* warm sequential calls of one function: p50 <= 2 ms, p99 <= 8 ms;
* a burst of ``burst`` first calls to as many new functions at once, once their deploys'
  stem cells are ready (30 s at most; the count is reported): p50 <= 0.2x floor;
* 64 closed-loop clients against an aiohttp echo server measured by the same client in the
  same run: >= 0.22x its calls/s.
Each call's record says how it was served (cold, stem, warm); the split is reported.
"""

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import floors, pipeline_floor
from bench.client import CallResult, invoke
from bench.containers import ContainerWatch
from bench.functions import FUNCTIONS, FunctionDef
from bench.measure import failures, first_call, latencies, phase_medians, sequential
from bench.parts import Sizes, load_level, platform, say
from bench.stats import summary

IMAGE = "faas-python"


def served(calls: list[CallResult]) -> dict[str, int]:
    return dict(Counter(str((c.record or {}).get("served")) for c in calls))


def part(calls: list[CallResult]) -> dict[str, Any]:
    return {"latency": summary(latencies(calls)), "served": served(calls), "failures": failures(calls)}


def new(fn: FunctionDef, name: str) -> FunctionDef:
    return replace(fn, name=name)


async def bench_adaptive(s: Sizes, work: Path, watch: ContainerWatch, out_dir: Path) -> dict[str, Any]:
    fn = FUNCTIONS["py"]
    out: dict[str, Any] = {"function": fn.name}
    async with platform(s, work, "adaptive") as p:
        assert p.calls is not None
        await p.register(fn)
        # its first call meets a stem cell and promotes it: the sequential calls below are warm
        await p.wait_stems(fn.runtime, 1)
        await first_call(p, fn)
        out["log"] = str(p.log_path)

        say(f"adaptive: {s.new_functions} newly deployed handler functions, first call each after a floor container")
        firsts: list[CallResult] = []
        floor: list[float] = []
        for i in range(s.new_functions):
            f = new(fn, f"new{i}")
            await p.register(f)
            await p.wait_stems(fn.runtime, 1)
            floor += await floors.container_floor(IMAGE, 1, network_disabled=True)
            firsts.append(await invoke(p.calls, f.name, {"i": i}))
        out["floor"] = summary(floor)
        out["first_call"] = {
            "latency": summary(latencies(firsts)),
            "phases_p50": phase_medians(firsts),
            "served": served(firsts),
            "failures": failures(firsts),
        }

        say(f"adaptive: {s.wf_calls} sequential calls of {fn.name}")
        calls = await sequential(p, fn, s.wf_calls)
        out["warm"] = part(calls)

        burst_fns = [new(fn, f"burst{i}") for i in range(s.burst)]
        for f in burst_fns:
            await p.register(f)
        # the deploys announce their first calls: wait (30 s at most) for their stem cells
        ready = await p.wait_stems(fn.runtime, s.burst, timeout=30)
        say(f"adaptive: a burst of {s.burst} first calls to {s.burst} new functions ({ready} stem cells idle)")
        burst = list(await asyncio.gather(*(invoke(p.calls, f.name, {"b": 1}) for f in burst_fns)))
        out["burst"] = {
            "latency": summary(latencies(burst)),
            "phases_p50": phase_medians(burst),
            "served": served(burst),
            "stem_cells_before": ready,
            "failures": failures(burst),
        }

        top = max(s.levels)
        say(f"adaptive: {top} closed-loop clients on {fn.name}")
        out["throughput"] = await load_level(p, fn, s, top, watch, out_dir)
    echo = await pipeline_floor.throughput(work / "echo-floor", "aiohttp", top, s.tp_seconds, s.tp_calls)
    say(f"aiohttp echo ({top} clients): {echo:.0f} calls/s")
    out["echo_floor"] = {"concurrency": top, "calls_per_s": echo}
    return out
