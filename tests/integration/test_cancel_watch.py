"""The node's cancel watch on a real nats-server: a key put before an item is taken is found
by ``requested`` (from memory, without a round trip, once loaded); one put while the item is
registered calls its ``on_cancel``; one put after it left calls nothing."""

import asyncio

from nats.aio.client import Client

from common.lifecycle import wait_event
from node_agent.cancels import CancelWatch
from schemas import Layout


async def test_a_cancel_before_or_during_an_item_is_seen_and_after_it_is_not(
    nc: Client, agent_nc: Client, layout: Layout
) -> None:
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    await kv.put("before", b"1")
    watch = CancelWatch(await agent_nc.jetstream().key_value(layout.cancels_bucket), "n1")
    await watch.start()
    try:
        assert await watch.requested("before")
        assert not await watch.requested("during")
        seen = asyncio.Event()
        with watch.watching("during", seen.set):
            await kv.put("during", b"1")
            assert await wait_event(seen, 5)
        assert await watch.requested("during")
        late: list[str] = []
        with watch.watching("after", lambda: late.append("after")):
            pass
        await kv.put("after", b"1")
        # once a later put is seen, so is this one (the watch delivers in order): it called nothing
        sentinel = asyncio.Event()
        with watch.watching("sentinel", sentinel.set):
            await kv.put("sentinel", b"1")
            assert await wait_event(sentinel, 5)
        assert await watch.requested("after") and late == []
    finally:
        await watch.stop()
