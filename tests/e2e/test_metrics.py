"""Metrics of the whole platform as `faas up` runs it (real processes, real containers): after
real calls, the agent's /metrics counts them by how each was served, its container starts
and its warm containers per key; the store's counts what it stored; the gateway's shows the
runtime's queue drained and the node fresh."""

import asyncio
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.platform_harness import running_platform, session
from tests.functions import DICE, zip_bytes

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RUNTIME = {"name": "pym", "image": "faas-python", "path": "/app", "run": "python3 test.py"}


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """The figures; none while the service is not listening yet (`faas up` is ready once the
    gateway and the store answer: the agent may still be starting)."""
    try:
        async with http.get(url) as r:
            assert r.status == 200, await r.text()
            text = await r.text()
    except aiohttp.ClientConnectionError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until(
    http: aiohttp.ClientSession, url: str, holds: Callable[[Samples], bool], timeout: float = 60
) -> Samples:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        s = await scrape(http, url)
        if holds(s):
            return s
        assert loop.time() < deadline, f"{url}: not as expected within {timeout}s: {sorted(s.items())[:60]}"
        await asyncio.sleep(0.2)


def warm(s: Samples, kind: str, key: str) -> float:
    return sum(
        v
        for (name, labels), v in s.items()
        if name == "faas_warm_containers" and labels[:2] == (("key", key), ("kind", kind))
    )


async def test_each_service_reports_what_real_calls_did(
    docker_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async with running_platform(tmp_path_factory.mktemp("metrics")) as platform, session(platform) as http:
        urls = platform.metrics_urls()
        async with aiohttp.ClientSession() as plain:
            # adaptive: stem cells of the runtime as soon as it is registered
            async with http.post("/v1/runtimes", json=RUNTIME) as r:
                assert r.status == 201, await r.text()
            await until(plain, urls["node-agent"], lambda s: warm(s, "stem", "pym") >= 1)
            form = aiohttp.FormData()
            form.add_field("name", "dice")
            form.add_field("runtime", "pym")
            form.add_field("module", zip_bytes(DICE), filename="dice.zip")
            async with http.post("/v1/functions", data=form) as r:
                assert r.status == 201, await r.text()

            served: Counter[str] = Counter()
            for _ in range(4):
                async with http.post("/v1/functions/dice/invoke", json={"roll": "2d6"}) as r:
                    assert r.status == 200, await r.text()
                    call = await r.json()
                assert call["status"] == "DONE", call
                served[call["served"]] += 1
            assert served["stem"] >= 1, served  # a new function's first call

            def calls(s: Samples, how: str) -> float:
                return s.get(("faas_calls_total", (("function", "dice"), ("served", how), ("status", "DONE"))), 0)

            # Counted once each finished event is stored, which follows the sync answer.
            agent = await until(plain, urls["node-agent"], lambda s: all(calls(s, h) == n for h, n in served.items()))
            assert sum(calls(agent, h) for h in ("cold", "stem", "warm")) == 4
            assert agent[("faas_call_duration_seconds_count", (("function", "dice"),))] == 4
            assert agent[("faas_container_starts_total", (("kind", "stem"),))] >= 1
            assert agent[("faas_slots", ())] == 8
            # repeat demand: the function gets warm containers of its own
            agent = await until(plain, urls["node-agent"], lambda s: warm(s, "function", "dice@1") >= 1)
            assert agent[("faas_container_starts_total", (("kind", "function"),))] >= 1

            store = await until(plain, urls["store"], lambda s: s.get(("faas_store_events_total", ()), 0) >= 4)
            assert store[("faas_store_dead_letters_total", ())] == 0

        gateway = await until(http, "/metrics", lambda s: s.get(("faas_queue_depth", (("runtime", "pym"),))) == 0)
        assert gateway[("faas_nodes", (("state", "fresh"),))] == 1
