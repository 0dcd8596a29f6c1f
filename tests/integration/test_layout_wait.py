"""Only the gateway may create the layout; an agent or a store that comes up first waits for it,
saying so, and starts once the gateway has made it. Any order still works."""

import asyncio
import logging
from pathlib import Path

import pytest

from common.natsserver import NatsServer
from gateway import Gateway
from node_agent.agent import NodeAgent
from schemas import Layout
from store import Store
from tests.integration.test_agent_lifecycle import FakeEngine, settings
from tests.integration.test_gateway_support import settings_for
from tests.integration.test_store_support import store_settings

DEADLINE_S = 20.0


def _fields(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, str]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == event]


async def _logged(caplog: pytest.LogCaptureFixture, event: str, count: int = 1) -> list[dict[str, str]]:
    async with asyncio.timeout(DEADLINE_S):
        while True:
            if len(found := _fields(caplog, event)) >= count:
                return found
            await asyncio.sleep(0.02)


async def test_an_agent_and_a_store_wait_for_the_gateway_to_make_the_layout(
    nats_server: NatsServer, layout: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="common.jetstream")
    agent = NodeAgent(settings(nats_server, layout, tmp_path, "early"), engine=FakeEngine())  # type: ignore[arg-type]
    store = Store(store_settings(nats_server, layout, tmp_path))
    starts = [asyncio.create_task(agent.start()), asyncio.create_task(store.start())]
    try:
        waiting = await _logged(caplog, "layout.waiting", count=2)
        # each says what it waits for: the agent its streams and buckets, the store the events
        assert sorted(w["missing"] for w in waiting)[0] == layout.events_stream
        assert layout.invoke_stream in sorted(w["missing"] for w in waiting)[1]
        assert not any(t.done() for t in starts)
        async with Gateway(settings_for(nats_server, layout)):
            async with asyncio.timeout(DEADLINE_S):
                await asyncio.gather(*starts)
            await _logged(caplog, "layout.ready", count=2)
            assert agent.state().runtimes == ["python"]
    finally:
        for task in starts:
            task.cancel()
        await asyncio.gather(*starts, return_exceptions=True)
        await agent.stop()
        await store.stop()
