"""New function versions announce their first call to the stem-cell layer, on a real nats-server."""

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.aio.client import Client

from node_agent.calls.catalog import Catalog
from node_agent.containers.artifacts import ArtifactCache
from node_agent.pools.deploys import Prefetch, follow_new_versions
from node_agent.pools.keys import PoolKey
from node_agent.pools.pool import Pools
from node_agent.pools.warmcontainer import PoolConfig, WarmContainer
from schemas import Layout, Limits
from tests.fakes.container import FakeAttached
from tests.fakes.docker import FakeEngine
from tests.functions import ECHO, python_runtime, register
from tests.integration.test_gateway_support import wait_until

RT = PoolKey.runtime("python")


def pools() -> Pools:
    ids = itertools.count()

    async def factory(key: PoolKey) -> WarmContainer:
        return WarmContainer(cid=f"c{next(ids)}", key=key, attached=FakeAttached(), reusable=False)

    return Pools(FakeEngine(only={"remove"}), factory, PoolConfig())


def expecting(p: Pools, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        d = p._demand.get(RT)
        return d is not None and d.expected() >= n

    return check


async def test_each_new_version_a_stem_cell_can_run_is_expected(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    await register(js, layout, python_runtime(), "old", ECHO)  # deployed before: not new
    p = pools()
    kv = await js.key_value(layout.functions_bucket)
    follow = asyncio.create_task(follow_new_versions(kv, p, lambda rt: rt == "python", ttl_s=60))
    try:
        await register(js, layout, python_runtime(), "fresh", ECHO)
        await register(js, layout, python_runtime(), "big", ECHO, limits=Limits(memory_mb=512))  # no stem
        await register(js, layout, python_runtime(name="other"), "elsewhere", ECHO)  # not served here
        await register(js, layout, python_runtime(), "fresh2", ECHO)
        await wait_until(expecting(p, 2), what="two expected first calls")
        # The watch delivers in order: once a later version is counted, the ones between
        # were seen and (rightly) not counted.
        await register(js, layout, python_runtime(), "fresh3", ECHO)
        await wait_until(expecting(p, 3), what="three expected first calls")
        assert p._demand[RT].expected() == 3 and p.target(RT) == 3
        assert PoolKey.runtime("other") not in p._demand
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await p.close()


async def test_a_new_versions_record_and_code_are_fetched_before_its_first_call(
    nc: Client, layout: Layout, tmp_path: Path
) -> None:
    js = nc.jetstream()
    runtimes, functions = await js.key_value(layout.runtimes_bucket), await js.key_value(layout.functions_bucket)
    store = await js.object_store(layout.artifacts_bucket)
    await register(js, layout, python_runtime(), "old", ECHO)
    catalog, artifacts = Catalog(runtimes, functions), ArtifactCache(store, tmp_path / "cache")
    p = pools()
    follow = asyncio.create_task(
        follow_new_versions(functions, p, lambda rt: rt == "python", 60, Prefetch(catalog, artifacts))
    )
    try:
        fresh = await register(js, layout, python_runtime(), "fresh", ECHO)

        async def cached() -> bool:
            return artifacts.held_bytes > 0

        await wait_until(cached, what="the new version's code body in the cache")
        # what the first call needs is there: the record without a KV read, the body
        # without the object store (both gone now, so a fetch would fail)
        await functions.delete("fresh")
        await store.delete(fresh.digest)
        assert await catalog.function("fresh", 1) == fresh
        body = await artifacts.code_body(fresh.digest, python_runtime().path)
        assert len(body) == artifacts.held_bytes
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await p.close()
