"""The node agent's start and stop against a real nats-server, with a fake container engine
(no Docker): the heartbeat entry comes and goes, stop is prompt and idempotent, a start that
fails part-way releases what it had and leaves a live twin's entry alone. Every wait has a
deadline."""

import asyncio
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.containers.images import ImageUse
from node_agent.nodeid import NodeIdInUse
from node_agent.settings import AgentSettings
from schemas import Layout
from tests.integration.test_store_support import eventually
from tests.natsusers import service_settings

DEADLINE_S = 5.0


class FakeEngine:
    """What an agent's start and an idle stop touch: no container is ever made."""

    def __init__(self, fail_cleanup: bool = False) -> None:
        self.fail_cleanup = fail_cleanup
        self.closed = False
        self.usage = ImageUse()  # the image pruner's record (it prunes nothing in these tests)

    async def remove_labelled(self, label: str) -> int:
        if self.fail_cleanup:
            raise OSError("docker went away")
        return 0

    async def seal_network(self, seal: object) -> bool:
        return False

    async def close(self) -> None:
        self.closed = True


def settings(server: NatsServer, layout: Layout, tmp_path: Path, node_id: str) -> AgentSettings:
    return AgentSettings(
        **service_settings(server, "agent"),
        prefix=layout.prefix,
        node_id=node_id,
        runtimes=["python"],
        policy="none",
        handler_sockets=False,
        heartbeat_s=0.2,
        fetch_timeout_s=0.5,
        grace_s=1.0,
        metrics_port=0,
        cache_dir=tmp_path / node_id,
    )


async def entry(nc: Client, layout: Layout, node_id: str) -> bytes | None:
    kv = await nc.jetstream().key_value(layout.nodes_bucket)
    try:
        return (await kv.get(node_id)).value or None
    except KeyNotFoundError:
        return None


async def wait_for_entry(nc: Client, layout: Layout, node_id: str) -> bytes:
    return await eventually(lambda: entry(nc, layout, node_id), timeout=DEADLINE_S)


async def test_start_beats_and_stop_withdraws_promptly_and_once(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    engine = FakeEngine()
    agent = NodeAgent(settings(nats_server, layout, tmp_path, "life1"), engine=engine)  # type: ignore[arg-type]
    async with agent:
        await agent.start()  # idempotent
        await wait_for_entry(nc, layout, "life1")
        assert agent.state().runtimes == ["python"]
        started = time.monotonic()
        await asyncio.wait_for(agent.stop(), DEADLINE_S)
        assert time.monotonic() - started < DEADLINE_S
    await agent.stop()  # idempotent (and __aexit__ stopped it again)
    assert await entry(nc, layout, "life1") is None  # the gateway stops routing here at once
    assert len(agent.tasks) == 0 and all(t.done() for t in agent._loops.values())
    assert agent._nc is not None and agent._nc.is_closed
    assert not engine.closed  # the caller's engine is the caller's to close
    with pytest.raises(RuntimeError):
        await agent.start()


async def test_a_start_that_fails_part_way_releases_what_it_had(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    agent = NodeAgent(
        settings(nats_server, layout, tmp_path, "life2"),
        engine=FakeEngine(fail_cleanup=True),  # type: ignore[arg-type]
    )
    async with asyncio.timeout(DEADLINE_S):
        with pytest.raises(OSError, match="docker went away"):
            await agent.start()
    assert agent._nc is not None and agent._nc.is_closed
    assert len(agent.tasks) == 0 and agent.stopped
    await agent.stop()  # nothing left to do


async def test_a_twin_that_cannot_claim_the_id_leaves_the_live_agents_entry(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    live = NodeAgent(settings(nats_server, layout, tmp_path, "life3"), engine=FakeEngine())  # type: ignore[arg-type]
    async with live:
        await wait_for_entry(nc, layout, "life3")
        twin = NodeAgent(
            settings(nats_server, layout, tmp_path / "twin", "life3"),
            engine=FakeEngine(),  # type: ignore[arg-type]
        )
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(NodeIdInUse):
                await twin.start()
        assert twin._nc is not None and twin._nc.is_closed
        assert await entry(nc, layout, "life3") is not None  # still the live agent's
