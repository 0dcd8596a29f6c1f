"""The agent's catalog on a real nats-server: a function's latest version, as nested calls
ask for it, is read from KV at most every ``runtime_ttl_s``."""

import asyncio

from nats.aio.client import Client

from node_agent.calls.catalog import Catalog
from schemas import Layout
from tests.functions import ECHO, python_runtime, register


async def test_the_latest_version_is_kept_for_the_ttl_then_read_again(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    await register(js, layout, python_runtime(), "f", ECHO, version=1)
    kv = await js.key_value(layout.functions_bucket)
    catalog = Catalog(await js.key_value(layout.runtimes_bucket), kv, runtime_ttl_s=0.5)
    assert (await catalog.latest("f")).version == 1
    await register(js, layout, python_runtime(), "f", ECHO, version=2)
    assert (await catalog.latest("f")).version == 1  # within the TTL: no KV read
    await asyncio.sleep(0.6)
    assert (await catalog.latest("f")).version == 2
    assert (await catalog.function("f", 1)).version == 1  # versions stay cached for good
