"""The call runner on a real nats-server, with the fake Docker engine: an invocation delivered
from the invoke stream runs, its ``finished`` event is stored in the events stream, then the
message is acked; an unknown function and a message delivered too often end as errors."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from common.pull import PullConsumer
from node_agent.calls.catalog import Catalog
from node_agent.calls.executor import Executor
from node_agent.calls.runner import CallRunner
from node_agent.containers.artifacts import ArtifactCache
from node_agent.containers.deps import DependencyImages
from schemas import CallStatus, Finished, Invocation, Layout, decode, encode
from schemas.clock import utcnow
from tests.conftest import NatsAs
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.fakes.runtime import function_image
from tests.functions import PYTHON_IMAGE, python_runtime, register

NODE = "node-1"
MAX_ATTEMPTS = 2
RUNTIME = python_runtime()
DICE = {"main.py": "import json, sys\nprint(json.dumps([6] * json.load(sys.stdin)['count']))\n"}


async def dice(p: Process) -> int:
    params = json.loads(await p.read())
    await p.err(b"rolling\n")
    await p.out(json.dumps([6] * params["count"]).encode() + b"\n")
    return 0


@dataclass
class Agent:
    """What node_agent/agent.py wires for one runtime's calls, with a fake Docker."""

    nc: Client
    layout: Layout
    engine: FakeEngine
    runner: CallRunner
    pull: PullConsumer

    async def invoke(self, inv: Invocation) -> int:
        """Publish an invocation as the gateway does; its stream sequence (the call number)."""
        ack = await self.nc.jetstream().publish(
            self.layout.invoke_runtime(RUNTIME.name), encode(inv), stream=self.layout.invoke_stream
        )
        return ack.seq

    async def delivery(self) -> Msg:
        msgs = await self.pull.fetch(1, timeout=5)
        assert len(msgs) == 1
        return msgs[0]

    async def finished(self, call_id: str) -> Finished:
        stored = await self.nc.jetstream().get_last_msg(
            self.layout.events_stream, self.layout.event(call_id, "finished")
        )
        assert stored.data is not None
        return decode(Finished, stored.data)

    async def acked(self) -> None:
        """Until the invocation is gone from its work queue (the server applies an ack on its
        own time)."""
        js = self.nc.jetstream()
        durable = self.layout.runtime_consumer(RUNTIME.name)
        async with asyncio.timeout(5):
            while True:
                info = await js.consumer_info(self.layout.invoke_stream, durable)
                stream = await js.stream_info(self.layout.invoke_stream)
                if (info.num_pending, info.num_ack_pending, stream.state.messages) == (0, 0, 0):
                    return
                await asyncio.sleep(0.02)


@pytest.fixture
async def agent(nc: Client, layout: Layout, tmp_path: Path, nats_as: NatsAs) -> AsyncIterator[Agent]:
    agent_nc = await nats_as("agent")
    js = agent_nc.jetstream()
    engine = FakeEngine(function_image(command=dice), images={PYTHON_IMAGE})
    catalog = Catalog(await js.key_value(layout.runtimes_bucket), await js.key_value(layout.functions_bucket))
    artifacts = ArtifactCache(await js.object_store(layout.artifacts_bucket), tmp_path / "cache")
    deps = DependencyImages(engine, artifacts, NODE, None)
    executor = Executor(engine=engine, artifacts=artifacts, deps=deps, node_id=NODE, policy="none", ca_bundle=None)
    runner = CallRunner(agent_nc, js, layout, catalog, executor, NODE, 30.0, MAX_ATTEMPTS, started_after_s=0.05)
    # the runtime's consumer as the agent makes it: one delivery more than attempts
    durable = layout.runtime_consumer(RUNTIME.name)
    config = ConsumerConfig(
        durable_name=durable,
        filter_subject=layout.invoke_runtime(RUNTIME.name),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=MAX_ATTEMPTS + 1,
        max_ack_pending=-1,
    )
    await js.add_consumer(layout.invoke_stream, config)
    pull = await PullConsumer.bind(agent_nc, layout.invoke_stream, durable)
    try:
        yield Agent(nc, layout, engine, runner, pull)
    finally:
        await pull.close(settle=False)
        await engine.close()
    assert engine.live == []


async def test_a_delivered_invocation_runs_and_is_acked_after_its_finished_event(agent: Agent) -> None:
    js = agent.nc.jetstream()
    await register(js, agent.layout, RUNTIME, "dice", DICE)
    number = await agent.invoke(Invocation(id="call-1", function="dice", params={"count": 3}, created_at=utcnow()))
    stored_before_ack: list[Finished] = []

    async def ack(msg: Msg) -> None:
        stored_before_ack.append(await agent.finished("call-1"))
        await msg.ack()

    await agent.runner.handle(await agent.delivery(), ack)
    event = await agent.finished("call-1")
    assert stored_before_ack == [event]
    assert event.status == CallStatus.DONE and event.result == [6, 6, 6] and event.error is None
    assert (event.number, event.function, event.version, event.runtime) == (number, "dice", 1, RUNTIME.name)
    assert (event.node, event.attempt, event.params, event.exit_code) == (NODE, 1, {"count": 3}, 0)
    assert event.created_at is not None and event.started_at is not None and event.duration_ms is not None
    [cid] = agent.engine.containers
    assert event.container == cid and agent.engine.removed == [cid]
    assert agent.engine.containers[cid].files["/app/main.py"] == DICE["main.py"].encode()  # from the object store
    await agent.acked()


async def test_an_unknown_function_ends_as_an_error_and_is_acked(agent: Agent) -> None:
    await agent.invoke(Invocation(id="call-2", function="ghost", params={"count": 1}))
    await agent.runner.handle(await agent.delivery())
    event = await agent.finished("call-2")
    assert event.status == CallStatus.ERROR and event.result is None
    assert event.error is not None and event.error.type == "FunctionNotFound" and "ghost" in event.error.message
    assert agent.engine.calls == []
    await agent.acked()


async def test_a_message_delivered_more_than_max_attempts_times_ends_as_too_many_attempts(agent: Agent) -> None:
    js = agent.nc.jetstream()
    await register(js, agent.layout, RUNTIME, "dice", DICE)
    await agent.invoke(Invocation(id="call-3", function="dice", params={"count": 1}))
    for _ in range(MAX_ATTEMPTS):  # each attempt's agent died before it finished
        await (await agent.delivery()).nak()
    await agent.runner.handle(await agent.delivery())
    event = await agent.finished("call-3")
    assert event.status == CallStatus.ERROR and event.attempt == MAX_ATTEMPTS + 1
    assert event.error is not None and event.error.type == "TooManyAttempts"
    assert agent.engine.calls == []  # given up on without running it
    await agent.acked()
