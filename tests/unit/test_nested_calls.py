"""Nested calls on the agent (node_agent/nested), without NATS or Docker: the checks before a
child is published, what is published, and a waiting call's slot given back meanwhile."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from node_agent.calls.catalog import Catalog
from node_agent.calls.slots import Slots
from node_agent.errors import AgentError, FunctionNotFound
from node_agent.nested.calls import NestedCalls, NestedConfig
from node_agent.nested.scope import CallScope
from node_agent.nested.waits import ChildWaits
from node_agent.wire.stdio import HandlerCall
from schemas import (
    REPLY_TO,
    Accepted,
    CallStatus,
    ErrorInfo,
    Finished,
    FunctionRecord,
    Invocation,
    Layout,
    Limits,
    decode,
    encode,
)
from schemas.dedup import MSG_ID

LAYOUT = Layout()


def record(name: str, calls: tuple[str, ...] = (), params_bytes: int = 1024) -> FunctionRecord:
    return FunctionRecord(
        name=name, runtime="py", version=3, digest="sha256:" + "0" * 64, size=1, archive="zip",
        calls=list(calls), limits=Limits(params_bytes=params_bytes),
    )  # fmt: skip


class FakeCatalog:
    def __init__(self, *functions: FunctionRecord) -> None:
        self.functions = {f.name: f for f in functions}

    async def function(self, name: str, version: int | None) -> FunctionRecord:
        await asyncio.sleep(0)  # a KV read: other calls run meanwhile
        if name not in self.functions:
            raise FunctionNotFound(f"function {name!r} is not registered")
        return self.functions[name]

    async def latest(self, name: str) -> FunctionRecord:
        return await self.function(name, None)


@dataclass
class FakeNats:
    """What NestedCalls uses of a connection: inboxes and core publishes."""

    published: list[tuple[str, bytes]] = field(default_factory=list)

    def new_inbox(self) -> str:
        return "_INBOX.agent.x"

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.published.append((subject, payload))


@dataclass
class FakePublisher:
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    more: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self, subject: str, payload: bytes = b"", timeout: float | None = None, stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:  # fmt: skip
        self.sent.append((subject, payload, headers or {}))
        self.more.set()
        return PubAck(stream=stream or "", seq=len(self.sent) + 100)


@dataclass
class Msg:
    subject: str
    data: bytes


def nested(slots: Slots, *functions: FunctionRecord, **config: Any) -> tuple[NestedCalls, FakePublisher, FakeNats]:
    nc = FakeNats()
    catalog = cast(Catalog, FakeCatalog(*functions))
    calls = NestedCalls(cast(Client, nc), cast(JetStreamContext, None), LAYOUT, catalog, slots, NestedConfig(**config))
    publisher = FakePublisher()
    calls._publisher = publisher  # type: ignore[assignment]
    return calls, publisher, nc


PARENT = Invocation(id="p1", function="fib", params=3, depth=2, root="r0")
FIB = record("fib", calls=("fib", "leaf"))
LEAF = record("leaf", params_bytes=1024)


async def test_a_child_is_an_ordinary_invocation_with_its_place_in_the_tree() -> None:
    calls, publisher, nc = nested(Slots(1), FIB, LEAF)
    child = await calls.publish("p1", PARENT, FIB, "leaf", {"x": 1}, wait=True)
    subject, payload, headers = publisher.sent[0]
    assert subject == LAYOUT.invoke_runtime("py") and headers[MSG_ID] == child
    assert headers[REPLY_TO] == calls.waits.reply_to(child)
    inv = decode(Invocation, payload)
    assert (inv.id, inv.function, inv.version, inv.params) == (child, "leaf", 3, {"x": 1})
    assert (inv.parent, inv.root, inv.depth, inv.caller) == ("p1", "r0", 3, "fib")
    (event_subject, event), *_ = nc.published
    accepted = decode(Accepted, event)
    assert event_subject == LAYOUT.event(child, "accepted")
    assert (accepted.number, accepted.parent, accepted.root) == (101, "p1", "r0")
    calls.waits.forget(child)
    # fire and forget: no reply subject; a root's children have it as their root
    root = Invocation(id="r0", function="fib")
    child = await calls.publish("r0", root, FIB, "leaf", 1, wait=False)
    inv = decode(Invocation, publisher.sent[1][1])
    assert REPLY_TO not in publisher.sent[1][2] and (inv.parent, inv.root, inv.depth) == ("r0", "r0", 1)


@pytest.mark.parametrize(
    ("function", "params", "config", "kind", "says"),
    [
        ("other", 1, {}, "CallNotAllowed", "may not call 'other': its calls allow-list names fib, leaf"),
        ("leaf", 1, {"max_depth": 2}, "CallDepthExceeded", "3 deep, over the maximum of 2"),
        ("leaf", 1, {"max_tree_calls": 0}, "CallTreeTooLarge", "call tree r0 has made 0 nested calls"),
        ("leaf", "x" * 2000, {}, "CallNotQueued", "over 'leaf''s limit of 1024"),
    ],
)
async def test_refused_calls(function: str, params: Any, config: dict[str, Any], kind: str, says: str) -> None:
    calls, publisher, _ = nested(Slots(1), FIB, LEAF, record("other"), **config)
    with pytest.raises(AgentError) as err:
        await calls.publish("p1", PARENT, FIB, function, params, wait=True)
    assert err.value.kind == kind and says in str(err.value)
    assert not publisher.sent


async def test_an_unknown_callee_is_refused_and_not_counted() -> None:
    calls, publisher, _ = nested(Slots(1), FIB, **{"max_tree_calls": 1})
    with pytest.raises(FunctionNotFound):
        await calls.publish("p1", PARENT, record("fib", calls=("gone",)), "gone", 1, wait=False)
    assert not publisher.sent
    await calls.publish("p1", PARENT, FIB, "fib", 1, wait=False)  # the refused one did not count
    assert len(publisher.sent) == 1


async def test_the_tree_size_holds_for_calls_checked_at_once() -> None:
    calls, publisher, _ = nested(Slots(1), FIB, LEAF, max_tree_calls=3)
    outcomes = await asyncio.gather(
        *(calls.publish("p1", PARENT, FIB, "leaf", i, wait=False) for i in range(5)), return_exceptions=True
    )
    assert len(publisher.sent) == 3
    assert sorted(type(o).__name__ for o in outcomes if isinstance(o, Exception)) == ["CallTreeTooLarge"] * 2


def finished(call_id: str, status: CallStatus = CallStatus.DONE, **kw: Any) -> bytes:
    return encode(Finished(call_id=call_id, number=5, status=status, **kw))


class Channel:
    """The shim's side: what the scope answered."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, line: bytes) -> None:
        await self.answers.put(json.loads(line))


async def started_child(publisher: FakePublisher, count: int = 1) -> str:
    while len(publisher.sent) < count:
        publisher.more.clear()
        await asyncio.wait_for(publisher.more.wait(), 1)
    return decode(Invocation, publisher.sent[count - 1][1]).id or ""


async def test_a_waiting_call_gives_its_slot_back_and_takes_one_before_its_answer() -> None:
    slots = Slots(1)
    await slots.acquire()  # the call's own slot, as the agent's runner holds it
    calls, publisher, _ = nested(slots, FIB, LEAF)
    scope, channel = CallScope(calls, "p1", PARENT, FIB), Channel()
    scope.on_call(HandlerCall(kind="call", ref=7, function="leaf", params=1), channel.send)
    child = await started_child(publisher)
    assert not slots.locked() and calls.parking.count == 1  # parked: the child may take the slot
    await slots.acquire()  # ... and does
    await calls.waits._on_msg(Msg(calls.waits.reply_to(child), finished(child, result=2)))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert channel.answers.empty()  # the parent waits for a slot before it goes on
    slots.release()  # the child's call ends
    answer = await asyncio.wait_for(channel.answers.get(), 1)
    assert answer == {"kind": "call_result", "ref": 7, "ok": True, "id": child, "result": 2}
    assert slots.locked() and calls.parking.count == 0 and not scope.parked
    await scope.close()


async def test_a_failed_child_is_answered_with_its_error_type() -> None:
    slots = Slots(1)
    await slots.acquire()
    calls, publisher, _ = nested(slots, FIB, LEAF)
    scope, channel = CallScope(calls, "p1", PARENT, FIB), Channel()
    scope.on_call(HandlerCall(kind="call", ref=1, function="leaf"), channel.send)
    child = await started_child(publisher)
    error = ErrorInfo(type="ValueError", message="bad")
    await calls.waits._on_msg(Msg(calls.waits.reply_to(child), finished(child, CallStatus.ERROR, error=error)))  # type: ignore[arg-type]
    answer = await asyncio.wait_for(channel.answers.get(), 1)
    assert answer == {
        "kind": "call_result",
        "ref": 1,
        "ok": False,
        "id": child,
        "error": {**error.model_dump(), "traceback": ""},
    }
    await scope.close()


async def test_a_call_that_ends_parked_forfeits_its_slot() -> None:
    slots = Slots(2)
    await slots.acquire()
    calls, publisher, _ = nested(slots, FIB, LEAF)
    scope, channel = CallScope(calls, "p1", PARENT, FIB), Channel()
    scope.on_call(HandlerCall(kind="call", ref=1, function="leaf"), channel.send)
    await started_child(publisher)
    await scope.close()  # the call timed out, say: its waits end, its slot is not taken back
    slots.release()  # the runner's release at the end gives back nothing
    assert calls.parking.count == 0 and slots._value == 2  # both free, not three


async def test_past_the_parking_bound_a_nested_call_is_refused() -> None:
    slots = Slots(1)
    await slots.acquire()
    calls, publisher, _ = nested(slots, FIB, LEAF, max_parked=0)
    scope, channel = CallScope(calls, "p1", PARENT, FIB), Channel()
    scope.on_call(HandlerCall(kind="call", ref=1, function="leaf"), channel.send)
    answer = await asyncio.wait_for(channel.answers.get(), 1)
    assert answer["ok"] is False and answer["error"]["type"] == "TooManyWaitingCalls"
    assert not publisher.sent and slots.locked()
    await scope.close()


@dataclass
class StoredMsg:
    data: bytes


class FakeStream:
    """The events stream's last ``finished`` of a call, once it is stored."""

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.asked = 0
        self.second = asyncio.Event()

    async def get_last_msg(self, stream: str, subject: str) -> StoredMsg:
        self.asked += 1
        if self.asked == 2:
            self.second.set()
        if subject not in self.stored:
            raise NotFoundError
        return StoredMsg(self.stored[subject])


async def test_a_reply_lost_on_core_nats_is_found_in_the_events_stream() -> None:
    stream = FakeStream()
    waits = ChildWaits(cast(Client, FakeNats()), cast(JetStreamContext, stream), LAYOUT, poll_s=0.01)
    waits.expect("k1")
    waiting = asyncio.create_task(waits.wait("k1"))
    await asyncio.wait_for(stream.second.wait(), 1)  # not there yet: asked again every poll_s
    assert not waiting.done()
    stream.stored[LAYOUT.event("k1", "finished")] = finished("k1", result=9)
    event = await asyncio.wait_for(waiting, 1)
    assert event.result == 9 and event.status is CallStatus.DONE
