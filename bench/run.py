"""One benchmark run on this machine: floors, then each policy on a fresh platform.

    python -m bench.run            # full run (a few minutes on 2 cores)
    python -m bench.run --quick    # smaller sizes, for a smoke test

Prints a table (figures, targets, PASS/MISS) and writes the same as JSON to ``bench/out/``.
Every call goes over HTTP (``POST /v1/functions/{name}/invoke``, sync) to 127.0.0.1.
"""

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import floors, pipeline_floor
from bench.adaptive import bench_adaptive
from bench.client import CallResult, invoke
from bench.containers import ContainerWatch
from bench.cpu import CpuMeter, wait_quiet
from bench.functions import FUNCTIONS, FunctionDef
from bench.machine import describe, one_line
from bench.measure import cpu_groups, failures, first_call, latencies, per_call_ms, phase_medians, sequential
from bench.parts import QUICK, Sizes, load_level, platform, say
from bench.platform import BenchPlatform
from bench.report import rows_of, table
from bench.stats import summary
from common.lifecycle import run_loop

OUT = Path(__file__).parent / "out"
IMAGE = "faas-python"


async def bench_floors(s: Sizes, containers: bool) -> dict[str, Any]:
    """The JSON-line and one-shot floors; the container floor too unless the cold calls are
    measured (then it is measured between them, see :func:`bench_cold`)."""
    say(f"floors: {s.floor_lines} JSON lines, {s.floor_one_shot} one-shots")
    await floors.container_floor(IMAGE, 1)  # the image's layers in the page cache
    out: dict[str, Any] = {"json_line": summary(await floors.json_line_floor(IMAGE, s.floor_lines))}
    for what, values in (await floors.one_shot_floor(IMAGE, s.floor_one_shot)).items():
        out[f"one_shot_{what}"] = summary(values)
    if containers:
        out["container"] = summary(await floors.container_floor(IMAGE, s.floor_containers))
    return out


async def bench_cold(s: Sizes, work: Path, watch: ContainerWatch, out_dir: Path) -> dict[str, Any]:
    fn = FUNCTIONS["py-cmd"]
    async with platform(s, work, "none") as p:
        await p.register(fn)
        await first_call(p, fn)
        say(f"none: {s.cold_calls} sequential calls of {fn.name} (command protocol), each after a floor container")
        t0 = time.time()
        # Floor and calls alternate, so that both see the same machine (a shared machine's
        # load drifts by more than the 1.3x the target allows).
        floor: list[float] = []
        floor_nd: list[float] = []
        calls = []
        assert p.calls is not None
        for i in range(s.cold_calls):
            floor += await floors.container_floor(IMAGE, 1)
            floor_nd += await floors.container_floor(IMAGE, 1, network_disabled=True)
            calls.append(await invoke(p.calls, fn.name, {"i": i}))
        await watch.sync()
        cold = watch.cold_calls()
        return {
            "floor": summary(floor),
            "floor_network_disabled": summary(floor_nd),
            "function": fn.name,
            "latency": summary(latencies(calls)),
            "phases_p50": phase_medians(calls),
            "containers_created": watch.counts(t0),
            "cold_calls": sum(c.call_id in cold for c in calls),
            "failures": failures(calls),
            "log": str(p.log_path),
        }


async def paced(p: BenchPlatform, fn: FunctionDef, n: int, gap_s: float = 0.2) -> list[CallResult]:
    """``n`` sequential calls, each once the pool holds as many idle containers again as
    before the call before it (the heartbeat says so), ``gap_s`` at least: the calls do not
    meet the refill of the container the call before used, nor its teardown."""
    assert p.http is not None
    calls = []
    for i in range(n):
        before = await p.warm_count(fn)
        calls.append(await invoke(p.http, fn.name, {"i": i}))
        await asyncio.sleep(gap_s)
        await p.wait_warm(fn, before, timeout=10)
    return calls


def warm_runtime_part(calls: list[CallResult], cold: set[str]) -> dict[str, Any]:
    served_warm = [c for c in calls if c.call_id not in cold]
    return {
        "latency": summary(latencies(calls)),
        "latency_served_warm": summary(latencies(served_warm)),
        "phases_p50_served_warm": phase_medians(served_warm),
        "cold_calls": len(calls) - len(served_warm),
        "failures": failures(calls),
    }


async def bench_warm_runtime(s: Sizes, work: Path, watch: ContainerWatch, out_dir: Path) -> dict[str, Any]:
    """The command protocol (``py-cmd``) and the handler protocol (``py``, loaded by the
    runtime's shim, pre-started) on one runtime's pool: back to back, then paced."""
    cmd, handler = FUNCTIONS["py-cmd"], FUNCTIONS["py"]
    async with platform(s, work, "warm-runtime") as p:
        await p.register(cmd)
        await p.register(handler)
        await first_call(p, cmd)  # no pool yet: cold; makes the runtime's pool wanted
        out: dict[str, Any] = {"function": cmd.name, "log": str(p.log_path)}
        for fn, key in ((cmd, "command"), (handler, "handler")):
            warm = await p.wait_warm(fn, 1, timeout=60)
            say(f"warm-runtime: pool has {warm}; {s.rt_calls} sequential calls of {fn.name} ({key}), back to back")
            t0 = time.time()
            calls = await sequential(p, fn, s.rt_calls)
            await watch.sync()
            part = warm_runtime_part(calls, watch.cold_calls())
            part["containers_created"] = watch.counts(t0)
            await p.wait_warm(fn, 1, timeout=60)
            say(f"warm-runtime: {s.rt_paced_calls} calls of {fn.name}, each once the pool is refilled")
            paced_calls = await paced(p, fn, s.rt_paced_calls)
            await watch.sync()
            part["paced"] = warm_runtime_part(paced_calls, watch.cold_calls())
            if key == "command":
                out.update(part)  # the command protocol's figures at the top, as before
            else:
                out[key] = {"function": fn.name, **part}
        return out


async def bench_warm_function(s: Sizes, work: Path, watch: ContainerWatch, out_dir: Path) -> dict[str, Any]:
    fn = FUNCTIONS["py"]
    async with platform(s, work, "warm-function") as p:
        await p.register(fn)
        await first_call(p, fn)
        warm = await p.wait_warm(fn, 1, timeout=60)
        say(f"warm-function: pool has {warm}; {s.wf_calls} sequential calls of {fn.name} (handler protocol)")
        meter = CpuMeter(cpu_groups(p))
        t0 = time.time()
        meter.start()
        calls = await sequential(p, fn, s.wf_calls)
        cpu = meter.stop()
        await watch.sync()
        cold = watch.cold_calls()
        out: dict[str, Any] = {
            "function": fn.name,
            "latency": summary(latencies(calls)),
            "phases_p50": phase_medians(calls),
            "cpu_ms_per_call": per_call_ms(cpu, len(calls)),
            "other_processes_cpu_s": meter.other_top,
            "containers_created": watch.counts(t0),
            "cold_calls": sum(c.call_id in cold for c in calls),
            "failures": failures(calls),
            "log": str(p.log_path),
        }
        say(f"warm-function throughput: up to {s.tp_calls} calls or {s.tp_seconds:g} s per level")
        out["throughput"] = [await load_level(p, fn, s, c, watch, out_dir) for c in s.levels]
    # HTTP -> NATS -> a process -> back, bare and durable, on this machine right after the levels.
    top = max(s.levels)
    out["pipeline_floor"] = {"concurrency": top}
    for mode in ("bare", "durable"):
        floor = await pipeline_floor.throughput(work / "pipeline-floor", mode, top, s.tp_seconds, s.tp_calls)
        say(f"pipeline floor, {mode} ({top} clients): {floor:.0f} calls/s")
        out["pipeline_floor"][mode] = floor
    return out


# --- the table --------------------------------------------------------------------------
async def quiet(s: Sizes, res: dict[str, Any], part: str) -> None:
    """Record how busy the machine was (other work) before a part; wait for quiet if asked."""
    busy = await wait_quiet(s.quiet_s) if s.quiet_s > 0 else await wait_quiet(0)
    res.setdefault("busy_cores_before", {})[part] = round(busy, 2)
    if busy > 0.3:
        say(f"note: {busy:.1f} cores busy with other work before {part}")


async def main(s: Sizes, policies: list[str], out_dir: Path) -> dict[str, Any]:
    machine = await describe()
    say(f"machine: {one_line(machine)}")
    res: dict[str, Any] = {"machine": machine, "sizes": asdict(s), "started_at": time.time()}
    await quiet(s, res, "floors")
    res["floors"] = await bench_floors(s, containers="none" not in policies)
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        work = Path(tmp)
        logs = out_dir / "logs"
        async with ContainerWatch(IMAGE) as watch:
            for policy, run in (
                ("none", bench_cold),
                ("warm-runtime", bench_warm_runtime),
                ("warm-function", bench_warm_function),
                ("adaptive", bench_adaptive),
            ):
                if policy in policies:
                    await quiet(s, res, policy)
                    res[policy] = await run(s, work, watch, out_dir)
                    keep_log(res[policy], logs, policy)
    res["finished_at"] = time.time()
    rows = rows_of(res)
    res["table"] = [r.as_dict() for r in rows]
    return res


def keep_log(result: dict[str, Any], logs: Path, policy: str) -> None:
    """The services' output of a policy's platform, kept beside the JSON."""
    src = Path(result["log"])
    if src.exists():
        logs.mkdir(parents=True, exist_ok=True)
        dst = logs / f"{policy}.log"
        dst.write_bytes(src.read_bytes())
        result["log"] = str(dst)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test, about a minute)")
    ap.add_argument("--calls", type=int, help="sequential warm-function calls (default 1000; quick 200)")
    ap.add_argument("--cold-calls", type=int, help="sequential calls under policy none (default 30)")
    ap.add_argument("--rt-calls", type=int, help="back-to-back calls under warm-runtime, per protocol (default 50)")
    ap.add_argument(
        "--rt-paced-calls", type=int, help="paced calls under warm-runtime, per protocol (default 20; quick 6)"
    )
    ap.add_argument("--tp-calls", type=int, help="calls per throughput level at most (default 2000)")
    ap.add_argument("--tp-seconds", type=float, help="seconds per throughput level at most (default 10)")
    ap.add_argument("--levels", help="concurrent clients per throughput level, comma-separated (default 1,8,64)")
    ap.add_argument("--slots", type=int, help="the agent's slots (default 8, as faas up)")
    ap.add_argument("--new-functions", type=int, help="adaptive: first calls of new functions (default 10; quick 4)")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="before each part, wait up to SECONDS for other work on the machine to stop (default 0)",
    )
    ap.add_argument("--log-level", help="the services' log level (default: theirs, INFO)")
    ap.add_argument(
        "--profile",
        type=int,
        metavar="CLIENTS",
        help="sample gateway, agent and store with py-spy during the throughput level with CLIENTS clients",
    )
    ap.add_argument("--policies", default="none,warm-runtime,warm-function,adaptive", help="which policies to run")
    ap.add_argument("--out", type=Path, default=OUT, help="where the JSON goes (default bench/out)")
    return ap.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    s = QUICK if args.quick else Sizes()
    over: dict[str, Any] = {
        k: v
        for k, v in {
            "wf_calls": args.calls,
            "cold_calls": args.cold_calls,
            "rt_calls": args.rt_calls,
            "rt_paced_calls": args.rt_paced_calls,
            "tp_calls": args.tp_calls,
            "tp_seconds": args.tp_seconds,
            "slots": args.slots,
            "new_functions": args.new_functions,
            "quiet_s": args.wait_quiet,
            "log_level": args.log_level,
            "profile_level": args.profile,
        }.items()
        if v is not None
    }
    if args.levels:
        over["levels"] = tuple(int(x) for x in args.levels.split(","))
    return replace(s, **over)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sizes_from(args)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = run_loop(main(sizes, policies, args.out))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(res["started_at"]))
    path = args.out / f"bench-{stamp}.json"
    text = json.dumps(res, indent=2, default=str)
    path.write_text(text)
    (args.out / "latest.json").write_text(text)
    print()
    print(f"faas benchmark, {one_line(res['machine'])}")
    print(table(rows_of(res)))
    print(f"\n{time.perf_counter() - t0:.0f} s; JSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
