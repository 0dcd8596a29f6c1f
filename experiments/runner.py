"""Runs a :class:`Workload`: for each policy a fresh platform, every function prepared
(registered, called once so that dependency images exist), then every arrival pattern;
one CSV row per call. Whether a call started a container of its own (cold) is read from
Docker's events (see bench/containers.py), after each pattern."""

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import CallResult, invoke, phases_ms
from bench.containers import ContainerWatch
from bench.cpu import CpuMeter
from bench.functions import FUNCTIONS, FunctionDef
from bench.machine import describe
from bench.measure import cpu_groups
from bench.platform import BenchPlatform, host_ca_bundle
from experiments.arrivals import Schedule
from experiments.results import CallRow, CsvWriter
from experiments.workload import Workload

# a first call may build a dependency image (pip/npm over the network)
PREPARE_WAIT_S = 600.0
CALL_WAIT_S = 120.0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout, flush=True)


def to_row(policy: str, fn: FunctionDef, pattern: str, index: int, c: CallResult, cold: set[str]) -> CallRow:
    ph = phases_ms(c) or {}
    return CallRow(
        policy=policy,
        function=fn.name,
        language=fn.language,
        protocol=fn.protocol,
        deps=fn.has_dependencies,
        pattern=pattern,
        call_index=index,
        call_id=c.call_id or "",
        submitted=c.submitted,
        finished=c.finished,
        latency_ms=c.latency_ms,
        status=c.status,
        start=("cold" if c.call_id in cold else "warm") if c.call_id else "",
        container=(c.container or "")[:12],
        served=str((c.record or {}).get("served") or ""),
        error=c.error or "",
        gateway_in_ms=ph.get("gateway_in"),
        queue_ms=ph.get("queue"),
        agent_run_ms=ph.get("agent_run"),
        return_ms=ph.get("return"),
    )


async def run_schedule(http: aiohttp.ClientSession, fn: FunctionDef, sched: Schedule) -> list[CallResult]:
    """Submit ``sched``'s calls at their times (or one after the other); results in call order."""
    if sched.offsets is None:
        return [await invoke(http, fn.name, {"i": i}, wait_s=CALL_WAIT_S) for i in range(sched.n)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def at(i: int, offset: float) -> CallResult:
        delay = t0 + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return await invoke(http, fn.name, {"i": i}, wait_s=CALL_WAIT_S)

    return list(await asyncio.gather(*(at(i, off) for i, off in enumerate(sched.offsets))))


async def settle(p: BenchPlatform, fns: list[FunctionDef], timeout: float) -> dict[str, int]:
    """Under a warm policy, wait (bounded) until each function has an idle warm container."""
    if p.policy == "none":
        return {}
    counts = {}
    for fn in fns:
        counts[fn.name] = await p.wait_warm(fn, 1, timeout=timeout)
    return counts


async def run_policy(
    policy: str, w: Workload, work: Path, watch: ContainerWatch, writer: CsvWriter, logs: Path
) -> dict[str, Any]:
    fns = [FUNCTIONS[name] for name in w.functions]
    log_path = logs / f"{policy}.log"
    info: dict[str, Any] = {"policy": policy, "log": str(log_path), "patterns": {}}
    async with BenchPlatform(
        work / policy, policy, slots=w.slots, ca_bundle=host_ca_bundle(), log_path=log_path, agent_env=w.agent_env
    ) as p:
        assert p.http is not None
        for fn in fns:
            await p.register(fn)
        say(f"{policy}: preparing {', '.join(f.name for f in fns)}")
        t = time.time()
        prepared = await asyncio.gather(*(invoke(p.http, fn.name, {"prepare": True}, PREPARE_WAIT_S) for fn in fns))
        await watch.sync()
        pairs = list(zip(fns, prepared, strict=True))
        writer.append(to_row(policy, fn, "prepare", 0, c, watch.cold_calls()) for fn, c in pairs)
        bad = {fn.name: c.error or c.status for fn, c in pairs if not c.ok}
        if bad:
            say(f"{policy}: preparing failed for {bad}; see {log_path}")
        info["prepare_s"] = round(time.time() - t, 1)
        info["prepare_failed"] = bad
        # how busy the platform and everything else kept the machine while measuring
        meter = CpuMeter(cpu_groups(p))
        meter.start()
        t_measure = time.time()
        for salt, pattern in enumerate(w.patterns):
            for fn in fns:
                warm = await settle(p, [fn], w.settle_s)
                sched = w.schedule(pattern, salt)
                t0 = time.time()
                calls = await run_schedule(p.http, fn, sched)
                await watch.sync()
                cold = watch.cold_calls()
                writer.append(to_row(policy, fn, pattern, i, c, cold) for i, c in enumerate(calls))
                n_cold = sum(c.call_id in cold for c in calls)
                n_bad = sum(not c.ok for c in calls)
                info["patterns"][f"{fn.name}/{pattern}"] = {
                    "calls": len(calls),
                    "failed": n_bad,
                    "cold": n_cold,
                    "warm_before": warm.get(fn.name),
                    "seconds": round(time.time() - t0, 2),
                    "containers_created": watch.counts(t0),
                }
                say(f"{policy}: {fn.name:<9} {pattern:<10} {len(calls)} calls, {n_cold} cold, {n_bad} failed")
        cpu = meter.stop()
        seconds = time.time() - t_measure
        info["busy_cores"] = {k: round(v / seconds, 2) for k, v in cpu.items()}
        info["other_processes_cpu_s"] = meter.other_top
    return info


def fresh_csv(out: Path) -> CsvWriter:
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "calls.csv"
    csv_path.unlink(missing_ok=True)
    return CsvWriter(csv_path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


async def run(w: Workload, out: Path) -> Path:
    """Runs the workload; writes ``out/calls.csv`` (replaced) and ``out/run.json``."""
    writer = fresh_csv(out)
    csv_path = writer.path
    meta: dict[str, Any] = {"workload": asdict(w), "machine": await describe(), "started_at": time.time()}
    say(f"{len(w.policies)} policies x {w.calls_per_policy()} calls; CSV: {csv_path}")
    with tempfile.TemporaryDirectory(prefix="faas-exp-") as tmp:
        async with ContainerWatch() as watch:
            meta["policies"] = [
                await run_policy(policy, w, Path(tmp), watch, writer, out / "logs") for policy in w.policies
            ]
    meta["finished_at"] = time.time()
    write_json(out / "run.json", meta)
    say(f"done in {meta['finished_at'] - meta['started_at']:.0f} s")
    return csv_path
