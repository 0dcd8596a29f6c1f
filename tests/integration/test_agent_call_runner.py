"""The call runner on a real nats-server, with the fake Docker engine: an invocation delivered
from the invoke stream runs, its ``finished`` event is stored in the events stream, then the
message is acked; an unknown function and a message delivered too often end as errors; a
cancelled call never runs, or has its container removed, and ends CANCELLED."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from common.pull import PullConsumer
from node_agent.calls.catalog import Catalog
from node_agent.calls.executor import Executor
from node_agent.calls.runner import CallRunner
from node_agent.cancels import CancelWatch
from node_agent.containers.artifacts import ArtifactCache
from node_agent.containers.deps import DependencyImages
from schemas import CallStatus, ErrorInfo, Finished, Invocation, Layout, Logs, decode, encode
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
    if params.get("sleep"):  # until its container is removed
        await p.err(b"going to sleep\n")
        await asyncio.sleep(3600)
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
    cancels = CancelWatch(await js.key_value(layout.cancels_bucket), NODE)
    await cancels.start()
    runner = CallRunner(
        agent_nc, js, layout, catalog, executor, NODE, 30.0, MAX_ATTEMPTS, started_after_s=0.05, cancels=cancels
    )
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
        await cancels.stop()
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


async def cancel(agent: Agent, call_id: str) -> None:
    """As the gateway asks for a cancel: a key in the cancels bucket."""
    await (await agent.nc.jetstream().key_value(agent.layout.cancels_bucket)).put(call_id, b"now")


async def first_log(agent: Agent, call_id: str) -> Logs:
    """Once the call runs: its first output, in the events stream."""
    js = agent.nc.jetstream()
    async with asyncio.timeout(10):
        while True:
            try:
                stored = await js.get_last_msg(agent.layout.events_stream, agent.layout.event(call_id, "log"))
                return decode(Logs, stored.data or b"")
            except NotFoundError:
                await asyncio.sleep(0.02)


async def test_a_call_cancelled_while_queued_never_runs_and_ends_cancelled(agent: Agent) -> None:
    await register(agent.nc.jetstream(), agent.layout, RUNTIME, "dice", DICE)
    await agent.invoke(Invocation(id="call-5", function="dice", params={"count": 1}))
    await cancel(agent, "call-5")
    await agent.runner.handle(await agent.delivery())
    event = await agent.finished("call-5")
    assert event.status == CallStatus.CANCELLED and event.node == NODE
    assert event.error == ErrorInfo(type="Cancelled", message="cancelled before it started")
    assert agent.engine.calls == []  # no container, no image lookup: it never ran
    await agent.acked()


async def test_a_cancelled_call_whose_final_event_is_there_is_only_acked(agent: Agent) -> None:
    """The gateway recorded the queued call CANCELLED: the agent adds nothing."""
    await agent.invoke(Invocation(id="call-6", function="dice", params={"count": 1}))
    js = agent.nc.jetstream()
    gateways = Finished(call_id="call-6", number=1, status=CallStatus.CANCELLED)
    ack = await js.publish(
        agent.layout.event("call-6", "finished"), encode(gateways), stream=agent.layout.events_stream
    )
    await cancel(agent, "call-6")
    await agent.runner.handle(await agent.delivery())
    stored = await js.get_last_msg(agent.layout.events_stream, agent.layout.event("call-6", "finished"))
    assert stored.seq == ack.seq and agent.engine.calls == []
    await agent.acked()


async def test_a_call_cancelled_while_it_runs_keeps_its_logs_and_its_container_is_removed(agent: Agent) -> None:
    js = agent.nc.jetstream()
    await register(js, agent.layout, RUNTIME, "dice", DICE)
    await agent.invoke(Invocation(id="call-7", function="dice", params={"sleep": True}))
    run = asyncio.create_task(agent.runner.handle(await agent.delivery()))
    chunk = await first_log(agent, "call-7")
    assert [line.text for line in chunk.lines] == ["going to sleep"]
    [cid] = agent.engine.live
    await cancel(agent, "call-7")
    await asyncio.wait_for(run, 10)
    event = await agent.finished("call-7")
    assert event.status == CallStatus.CANCELLED
    assert event.error == ErrorInfo(type="Cancelled", message="cancelled while it ran")
    assert agent.engine.live == [] and agent.engine.removed == [cid]
    await agent.acked()


async def test_the_agent_stopping_is_not_a_cancel(agent: Agent) -> None:
    """A cancel of the runner's task (the agent's stop) propagates: no final event, not acked
    (redelivered elsewhere), the container removed all the same."""
    await register(agent.nc.jetstream(), agent.layout, RUNTIME, "dice", DICE)
    await agent.invoke(Invocation(id="call-8", function="dice", params={"sleep": True}))
    run = asyncio.create_task(agent.runner.handle(await agent.delivery()))
    await first_log(agent, "call-8")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert agent.engine.live == []
    with pytest.raises(NotFoundError):
        await agent.finished("call-8")
