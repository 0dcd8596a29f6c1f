"""common/metrics.py and common/metrics_http.py: the cached fetch a scrape reads, the
registry of one service, and the small /metrics server."""

import asyncio

import aiohttp
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

from common.metrics import Cached, Metrics
from common.metrics_http import MetricsServer


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_cached_fetch_is_shared_by_concurrent_scrapes_and_kept_for_its_ttl() -> None:
    fetches = 0
    gate = asyncio.Event()

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        await gate.wait()
        return fetches

    cached = Cached("t", fetch, ttl_s=60, timeout_s=5)
    waiting = [asyncio.create_task(cached.get()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1] * 5
    assert await cached.get() == 1  # within the ttl: not fetched again
    assert fetches == 1
    assert cached.age_s is not None and cached.age_s >= 0


async def test_a_failed_or_slow_fetch_keeps_the_last_value() -> None:
    answers: list[object] = [7, RuntimeError("nats away"), "slow", 9]

    async def fetch() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if answer == "slow":
            await asyncio.sleep(10)
        assert isinstance(answer, int)
        return answer

    cached = Cached("t", fetch, ttl_s=0, timeout_s=0.05)
    assert cached.value is None
    assert await cached.get() == 7
    assert await cached.get() == 7  # failed: the last value
    assert await cached.get() == 7  # timed out: the last value, and the scrape was not held up
    assert await cached.get() == 9


async def test_the_server_answers_the_registry_in_the_text_format_and_healthz() -> None:
    metrics = Metrics()
    hits = Counter("faas_test_hits", "test", ["kind"], registry=metrics.registry)
    refreshed: list[int] = []

    async def refresh() -> None:
        refreshed.append(1)

    metrics.before_scrape(refresh)
    healthy = True
    server = MetricsServer("test", metrics, "127.0.0.1", 0, lambda: healthy)
    await server.start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        async with aiohttp.ClientSession() as http:
            hits.labels("a").inc(3)
            async with http.get(server.url) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                assert samples(await r.text())[("faas_test_hits_total", (("kind", "a"),))] == 3
            hits.labels("a").inc()
            async with http.get(server.url) as r:
                assert samples(await r.text())[("faas_test_hits_total", (("kind", "a"),))] == 4
            assert len(refreshed) == 2  # before each scrape
            async with http.get(server.url.replace("/metrics", "/healthz")) as r:
                assert r.status == 200
            healthy = False
            async with http.get(server.url.replace("/metrics", "/healthz")) as r:
                assert r.status == 503
    finally:
        await server.stop()
    await server.stop()  # idempotent


async def test_two_services_in_one_process_keep_their_own_figures() -> None:
    one, two = Metrics(), Metrics()
    Counter("faas_same_name", "test", registry=one.registry).inc(2)
    Counter("faas_same_name", "test", registry=two.registry)
    assert samples((await one.render()).decode())[("faas_same_name_total", ())] == 2
    assert samples((await two.render()).decode())[("faas_same_name_total", ())] == 0
