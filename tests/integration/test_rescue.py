"""Rescue of work routed to a dead node (node_agent/calls/rescue.py) on a real nats-server:
a call that can run goes back to its runtime's subject with its number; one whose function
or invocation cannot be resolved ends as a Finished ERROR event; the emptied consumer of the
dead node is deleted."""

import secrets

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from common.pull import PullConsumer
from common.workitem import Delivery
from node_agent.calls.catalog import Catalog
from node_agent.calls.rescue import RESCUED_NUMBER, rescue_dead_nodes
from schemas import CallStatus, Finished, FunctionRecord, Invocation, Layout, decode, encode

DIGEST = "sha256:" + "0" * 64


@pytest.fixture
async def dead_node(nc: Client, layout: Layout) -> str:
    """A node whose consumer is there but whose heartbeat is not (as after a crash)."""
    node_id = "dead" + secrets.token_hex(3)
    name = layout.node_consumer(node_id)
    await nc.jetstream().add_consumer(
        layout.invoke_stream,
        ConsumerConfig(durable_name=name, filter_subject=layout.invoke_node(node_id), ack_policy=AckPolicy.EXPLICIT),
    )
    return node_id


async def catalog(nc: Client, agent_nc: Client, layout: Layout) -> Catalog:
    """A registered function, and the agent's catalog (read as the agent user)."""
    functions = await nc.jetstream().key_value(layout.functions_bucket)
    record = FunctionRecord(name="known", runtime="python", version=1, digest=DIGEST, size=1, archive="zip")
    await functions.put("known", encode(record))
    js = agent_nc.jetstream()
    return Catalog(await js.key_value(layout.runtimes_bucket), await js.key_value(layout.functions_bucket))


async def route(nc: Client, layout: Layout, node_id: str, data: bytes) -> int:
    ack = await nc.jetstream().publish(layout.invoke_node(node_id), data, stream=layout.invoke_stream)
    return int(ack.seq)


async def finished_event(nc: Client, layout: Layout, call_id: str) -> tuple[Finished, dict[str, str]]:
    msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "finished"))
    return decode(Finished, msg.data or b""), dict(msg.headers or {})


async def rescue(agent_nc: Client, layout: Layout, cat: Catalog) -> int:
    nodes = await agent_nc.jetstream().key_value(layout.nodes_bucket)
    return await rescue_dead_nodes(agent_nc, layout, nodes, cat, "alive1")


async def test_a_routable_call_goes_back_to_its_runtime_keeping_its_number(
    nc: Client, layout: Layout, dead_node: str, agent_nc: Client
) -> None:
    cat = await catalog(nc, agent_nc, layout)
    number = await route(nc, layout, dead_node, encode(Invocation(id="c-known", function="known")))
    assert await rescue(agent_nc, layout, cat) == 1

    js = nc.jetstream()
    await js.add_consumer(
        layout.invoke_stream,
        ConsumerConfig(
            durable_name="rt_python", filter_subject=layout.invoke_runtime("python"), ack_policy=AckPolicy.EXPLICIT
        ),
    )
    pull = await PullConsumer.bind(nc, layout.invoke_stream, "rt_python")
    try:
        moved = await pull.next_now()
        assert moved is not None and decode(Invocation, moved.data).id == "c-known"
        assert (moved.headers or {})[RESCUED_NUMBER] == str(number)
        assert Delivery(moved).sequence != number  # a new message, the same call number
        assert Delivery(moved).attempt == 1  # never delivered to the dead node: the first
        await moved.ack()
    finally:
        await pull.close()


async def test_a_call_that_was_running_on_the_dead_node_keeps_its_attempts(
    nc: Client, layout: Layout, dead_node: str, agent_nc: Client
) -> None:
    cat = await catalog(nc, agent_nc, layout)
    await route(nc, layout, dead_node, encode(Invocation(id="c-ran", function="known")))
    # the dead node had taken it (one delivery, never acked), and its ack wait has passed
    js = nc.jetstream()
    dead = await PullConsumer.bind(nc, layout.invoke_stream, layout.node_consumer(dead_node))
    taken = await dead.next_now()
    assert taken is not None and Delivery(taken).attempt == 1
    await taken.nak()  # as an expired ack wait would, at once
    await dead.close(settle=False)
    assert await rescue(agent_nc, layout, cat) == 1

    await js.add_consumer(
        layout.invoke_stream,
        ConsumerConfig(
            durable_name="rt_python2", filter_subject=layout.invoke_runtime("python"), ack_policy=AckPolicy.EXPLICIT
        ),
    )
    pull = await PullConsumer.bind(nc, layout.invoke_stream, "rt_python2")
    try:
        moved = await pull.next_now()
        assert moved is not None and decode(Invocation, moved.data).id == "c-ran"
        assert Delivery(moved).attempt == 2  # its second run, however many moves
        await moved.nak()
        again = await pull.fetch(1, timeout=5)
        assert len(again) == 1 and Delivery(again[0]).attempt == 3
        await again[0].ack()
    finally:
        await pull.close()


async def test_a_call_whose_function_cannot_be_resolved_ends_as_an_error(
    nc: Client, layout: Layout, dead_node: str, agent_nc: Client
) -> None:
    cat = await catalog(nc, agent_nc, layout)
    url = "http://127.0.0.1:9/hook"
    ghost = Invocation(id="c-ghost", function="ghost", params={"a": 1}, callback_url=url)
    number = await route(nc, layout, dead_node, encode(ghost))
    garbage = await route(nc, layout, dead_node, b"not an invocation")
    assert await rescue(agent_nc, layout, cat) == 0  # nothing moved: both ended here

    event, headers = await finished_event(nc, layout, "c-ghost")
    assert event.status == CallStatus.ERROR and event.number == number
    assert event.error is not None and event.error.type == "FunctionNotFound"
    assert "'ghost' is not registered" in event.error.message and dead_node in event.error.message
    assert event.function == "ghost" and event.params == {"a": 1} and event.node == "alive1" and event.attempt == 1
    assert headers["Nats-Msg-Id"] == "c-ghost.finished.1"
    # the callback dispatcher hears of it too
    due = await nc.jetstream().get_last_msg(layout.events_stream, layout.callback_due("c-ghost"))
    assert decode(Finished, due.data or b"").status == CallStatus.ERROR

    event, _ = await finished_event(nc, layout, f"n{garbage}")
    assert event.status == CallStatus.ERROR and event.number == garbage
    assert event.error is not None and event.error.type == "InvalidInvocation"

    # both acked: the consumer is empty, and the next round deletes it
    info = await nc.jetstream().consumer_info(layout.invoke_stream, layout.node_consumer(dead_node))
    assert info.num_pending == 0 and info.num_ack_pending == 0
    assert await rescue(agent_nc, layout, cat) == 0
    with pytest.raises(NotFoundError):
        await nc.jetstream().consumer_info(layout.invoke_stream, layout.node_consumer(dead_node))


async def test_a_live_node_is_left_alone(nc: Client, layout: Layout, dead_node: str, agent_nc: Client) -> None:
    cat = await catalog(nc, agent_nc, layout)
    nodes = await nc.jetstream().key_value(layout.nodes_bucket)
    await nodes.put(dead_node, b"{}")  # its heartbeat is back
    await route(nc, layout, dead_node, encode(Invocation(id="c-kept", function="known")))
    assert await rescue(agent_nc, layout, cat) == 0
    info = await nc.jetstream().consumer_info(layout.invoke_stream, layout.node_consumer(dead_node))
    assert info.num_pending == 1
