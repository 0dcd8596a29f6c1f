"""Check 8: calls/s through the two gateways to the two agent hosts, against one host alone
(``faas up``'s platform on this machine), with the same closed-loop client in the same run.

A measurement, not a judge of speed (no timing assert): it passes when every call of both
layouts ended DONE, and its line gives the figures for docs/benchmarks.md. Every host of
the deployment runs on this machine's cores, so the deployment cannot be faster than one
host here; the ratio says what spreading the platform over hosts costs in CPU (TLS, routes
between three NATS servers, R3 streams), not what more machines would gain.
"""

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import Caller, LoadResult, closed_loop
from bench.cpu import machine_busy_seconds
from bench.functions import FUNCTIONS, PYTHON_RUNTIME, FunctionDef
from bench.measure import failures, latencies
from bench.platform import BenchPlatform, host_ca_bundle
from bench.stats import summary
from tests.deploy.deployment import GATEWAY_PORT, Deployment, Result

FN: FunctionDef = FUNCTIONS["py"]  # a handler echo: what warm calls cost, not the function
CLIENTS = 32  # in all, split evenly over the gateways
SECONDS = 12.0
WARMUP_S = 4.0
CGROUPS = Path("/sys/fs/cgroup/cpuacct/docker")


def _cgroup_s(container: str) -> float:
    """CPU seconds of a container's cgroup (cgroup v1, cgroupfs driver; 0 when not found)."""
    cid = subprocess.run(
        ["docker", "inspect", "--format", "{{.Id}}", container], capture_output=True, text=True, check=False
    ).stdout.strip()
    usage = CGROUPS / cid / "cpuacct.usage"
    return int(usage.read_text()) / 1e9 if cid and usage.exists() else 0.0


def _cpu(d: Deployment) -> dict[str, float]:
    """CPU seconds so far: the machine, and each host of the deployment by its roles."""
    out = {"machine": machine_busy_seconds()}
    for host in d.hosts.layout:
        out[f"{host.name} {'+'.join(host.groups)}"] = _cgroup_s(host.container)
    return out


async def _register(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/runtimes", json=PYTHON_RUNTIME) as resp:
        if resp.status != 201:
            raise AssertionError(f"register runtime: {resp.status} {await resp.text()}")
    form = aiohttp.FormData()
    form.add_field("name", FN.name)
    form.add_field("runtime", FN.runtime)
    assert FN.handler is not None
    form.add_field("handler", FN.handler)
    form.add_field("module", FN.archive(), filename="py.zip", content_type="application/zip")
    async with http.post("/v1/functions", data=form) as resp:
        if resp.status != 201:
            raise AssertionError(f"upload function: {resp.status} {await resp.text()}")


async def _load(callers: list[Caller], seconds: float) -> LoadResult:
    """``CLIENTS`` closed-loop clients spread over ``callers`` for ``seconds``."""
    each = CLIENTS // len(callers)
    t0 = time.perf_counter()
    parts = await asyncio.gather(*(closed_loop(c, FN.name, each, 10**9, seconds) for c in callers))
    return LoadResult(CLIENTS, [call for part in parts for call in part.calls], time.perf_counter() - t0)


async def _measure(callers: list[Caller], cpu: Callable[[], dict[str, float]]) -> dict[str, Any]:
    await _load(callers, WARMUP_S)  # the pools grow to the load first
    before = cpu()
    load = await _load(callers, SECONDS)
    used = {k: v - before[k] for k, v in cpu().items()}
    lat = summary(latencies(load.calls))
    n = max(len(load.calls), 1)
    return {
        "calls_per_s": load.throughput,
        "p50": lat.get("p50"),
        "failures": failures(load.calls),
        # CPU per call: the machine's, and (deployment) each host's, in ms
        "cpu_ms": {k: round(v * 1000 / n, 2) for k, v in used.items()},
    }


def _line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name}: {m['calls_per_s']:.0f} calls/s, p50 {m['p50'] or 0:.1f} ms, {m['failures']['count']} failed, "
        f"machine CPU {m['cpu_ms']['machine']} ms/call"
    )


async def throughput(d: Deployment) -> Result:
    async with d.http(d.gateways[0]) as http:
        await _register(http)
    callers = [Caller(gw.address, GATEWAY_PORT, d.tokens[gw.name]) for gw in d.gateways]
    try:
        spread = await _measure(callers, lambda: _cpu(d))
    finally:
        for c in callers:
            await c.close()
    # One host alone: the same services as one faas up, on this machine, measured after.
    work = Path(d.work) / "one-host"
    async with BenchPlatform(work, "adaptive", ca_bundle=host_ca_bundle(), log_path=work / "platform.log") as p:
        await p.register(FN)
        assert p.calls is not None
        one = await _measure([p.calls], lambda: {"machine": machine_busy_seconds()})
    ok = spread["failures"]["count"] == 0 and one["failures"]["count"] == 0
    ratio = spread["calls_per_s"] / one["calls_per_s"] if one["calls_per_s"] else 0.0
    figures = [
        _line(f"{len(d.gateways)} gateways, {len(d.agents)} agent hosts", spread),
        _line("one host", one),
        f"ratio {ratio:.2f}; {CLIENTS} closed-loop clients, {SECONDS:.0f} s each",
        "deployment CPU ms/call by host: "
        + ", ".join(f"{k} {v}" for k, v in spread["cpu_ms"].items() if k != "machine"),
    ]
    return Result(8, "", ok, "; ".join(figures))
