"""What the benchmark's parts share: a platform per policy, a throughput level, progress lines."""

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profile
from bench.client import LoadResult, closed_loop
from bench.containers import ContainerWatch
from bench.cpu import CpuMeter
from bench.functions import FunctionDef
from bench.measure import cpu_groups, failures, latencies, per_call_ms, phase_medians
from bench.platform import BenchPlatform
from bench.stats import summary


@dataclass(frozen=True)
class Sizes:
    floor_containers: int = 20
    floor_lines: int = 500
    floor_one_shot: int = 10
    cold_calls: int = 30
    rt_calls: int = 50
    rt_paced_calls: int = 20
    wf_calls: int = 1000
    tp_calls: int = 2000
    tp_seconds: float = 10.0
    levels: tuple[int, ...] = (1, 8, 64)
    # adaptive: first calls of newly deployed functions, and a burst of first calls at once
    new_functions: int = 10
    burst: int = 8
    slots: int = 8
    # before each part, wait up to this long for the machine to be quiet (0: don't)
    quiet_s: float = 0.0
    log_level: str | None = None  # the services' log level (None: their default, INFO)
    profile_level: int | None = None  # py-spy the services during this throughput level


QUICK = Sizes(
    floor_containers=5,
    floor_lines=100,
    floor_one_shot=3,
    cold_calls=8,
    rt_calls=15,
    rt_paced_calls=6,
    wf_calls=200,
    tp_calls=300,
    tp_seconds=3.0,
    new_functions=4,
)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout, flush=True)


def platform(s: Sizes, work: Path, policy: str) -> BenchPlatform:
    """A fresh platform for one policy, its service logs in ``<work>/<policy>.log``."""
    return BenchPlatform(
        work / policy, policy, slots=s.slots, log_path=work / f"{policy}.log", agent_env=service_env(s)
    )


def service_env(s: Sizes) -> dict[str, str]:
    if not s.log_level:
        return {}
    return {f"FAAS_{svc}_LOG_LEVEL": s.log_level for svc in ("GATEWAY", "AGENT", "STORE")}


async def load_level(
    p: BenchPlatform, fn: FunctionDef, s: Sizes, concurrency: int, watch: ContainerWatch, out_dir: Path
) -> dict[str, Any]:
    assert p.calls is not None
    # Warm up at this concurrency: the pool follows demand, give it the demand, then wait
    # until the heartbeat shows the containers idle.
    await closed_loop(p.calls, fn.name, concurrency, max_calls=20 * concurrency + 50, max_s=2.0)
    warm = await p.wait_warm(fn, min(concurrency, s.slots), timeout=30)
    meter = CpuMeter(cpu_groups(p))
    t0 = time.time()
    profiling = None
    if s.profile_level == concurrency:
        pids = {name: pid for name, pid in p.platform.pids().items() if name != "nats-server"}
        seconds = max(1.0, s.tp_seconds - 1)
        profiling = asyncio.create_task(profile.record(pids, seconds, out_dir / "profile"))
    meter.start()
    load: LoadResult = await closed_loop(p.calls, fn.name, concurrency, s.tp_calls, s.tp_seconds)
    cpu = meter.stop()
    profiled = profile.summarise(await profiling) if profiling else {}
    await watch.sync()
    cold = watch.cold_calls()
    say(f"  {concurrency:>3} clients: {load.throughput:.0f} calls/s over {len(load.calls)} calls (pool {warm})")
    return {
        "concurrency": concurrency,
        "calls": len(load.calls),
        "wall_s": round(load.wall_s, 3),
        "calls_per_s": load.throughput,
        "latency": summary(latencies(load.calls)),
        "phases_p50": phase_medians(load.calls),
        "cpu_ms_per_call": per_call_ms(cpu, len(load.calls)),
        "cpu_busy_cores": {k: round(v / load.wall_s, 2) for k, v in cpu.items()},
        "other_processes_cpu_s": meter.other_top,
        "warm_idle_before": warm,
        "containers_created": watch.counts(t0),
        "cold_calls": sum(c.call_id in cold for c in load.calls),
        "failures": failures(load.calls),
        **({"profile": profiled} if profiled else {}),
    }
