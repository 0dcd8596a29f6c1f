"""``POST /v1/calls/{id}/cancel`` and ``nats req <prefix>.cancel.<id>`` (the test plays the node
agent and, where it matters, the store): a queued call is recorded CANCELLED at once and its
sync caller answered with that record; a running one is left to its node (the key in the
cancels bucket); an ended call is 409, an unknown one 404; a final event that got there
first wins over the cancel."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, NotFoundError

from common.natsserver import NatsServer
from gateway.cancels import Cancels
from schemas import CallRecord, CallStatus, ErrorInfo, Finished, Layout, decode, encode
from tests.conftest import NatsAs
from tests.integration.test_gateway_support import (
    FakeAgent,
    call_record,
    fake_store,
    nats_request,
    register_function,
    register_runtime,
    running_gateway,
    wait_until,
)


@pytest.fixture
async def http(nats_server: NatsServer, layout: Layout, nc: Client) -> AsyncIterator[aiohttp.ClientSession]:
    # No store: its records are missing (store_timeout_s), the call's events say where it is.
    async with running_gateway(
        nats_server, layout, store_timeout_s=0.3, callbacks=False, sync_wait_s=20, sync_poll_s=0.2
    ) as (_, session):
        await register_runtime(session)
        await register_function(session)
        yield session


@pytest.fixture
def agent(nc: Client, layout: Layout) -> FakeAgent:
    return FakeAgent(nc, layout)


async def queue_call(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("/v1/functions/dice/invoke?async=true", json={"roll": "1d6"}) as r:
        assert r.status == 202, await r.text()
        body: dict[str, Any] = await r.json()
    return body


async def cancel(http: aiohttp.ClientSession, call_id: str) -> tuple[int, Any]:
    async with http.post(f"/v1/calls/{call_id}/cancel") as r:
        return r.status, await r.json()


async def finished(nc: Client, layout: Layout, call_id: str) -> Finished:
    stored = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "finished"))
    return decode(Finished, stored.data or b"")


async def cancel_key(nc: Client, layout: Layout, call_id: str) -> bytes | None:
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    try:
        return (await kv.get(call_id)).value
    except KeyNotFoundError:
        return None


async def test_a_queued_call_is_cancelled_at_once_and_a_second_cancel_is_409(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    call = await queue_call(http)
    status, body = await cancel(http, call["id"])
    assert (status, body) == (202, {"id": call["id"], "status": "CANCELLED", "cancel_requested": True})
    assert await cancel_key(nc, layout, call["id"])  # the agent that takes it only acks it
    event = await finished(nc, layout, call["id"])
    assert (event.status, event.number, event.function) == (CallStatus.CANCELLED, call["number"], "dice")
    assert event.error == ErrorInfo(type="Cancelled", message="cancelled before it started")
    status, body = await cancel(http, call["id"])
    assert status == 409 and body["error"]["code"] == "conflict" and "CANCELLED" in body["error"]["message"]


async def test_a_running_call_is_left_to_its_node(
    http: aiohttp.ClientSession, agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    call = await queue_call(http)
    inv, number = await agent.pull()
    await agent.start(inv, number)
    status, body = await cancel(http, call["id"])
    assert (status, body["status"]) == (202, "RUNNING")
    assert await cancel_key(nc, layout, call["id"])
    with pytest.raises(NotFoundError):  # the node publishes the final event once it stopped it
        await finished(nc, layout, call["id"])


async def test_a_sync_caller_gets_the_cancelled_record(
    http: aiohttp.ClientSession, agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    sync = asyncio.create_task(http.post("/v1/functions/dice/invoke", json={"roll": "2d6"}))
    inv, number = await agent.pull()  # taken, not started: queued as far as anyone knows
    assert inv.id is not None
    call_id = inv.id

    async def announced() -> bool:  # once the call has waited announce_after_s
        try:
            await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "accepted"))
        except NotFoundError:
            return False
        return True

    await wait_until(announced)
    status, body = await cancel(http, inv.id)
    assert (status, body["status"]) == (202, "CANCELLED")
    async with await sync as r:
        assert r.status == 200, await r.text()
        record = CallRecord.model_validate(await r.json())
    assert (record.id, record.number, record.status) == (inv.id, number, CallStatus.CANCELLED)
    assert record.params == {"roll": "2d6"} and record.error is not None and record.error.type == "Cancelled"


async def test_the_node_ends_a_running_call_and_its_sync_caller_gets_that(
    http: aiohttp.ClientSession, agent: FakeAgent
) -> None:
    sync = asyncio.create_task(http.post("/v1/functions/dice/invoke", json={"roll": "3d6"}))
    inv, number = await agent.pull()
    assert inv.id is not None
    await agent.start(inv, number)
    status, body = await cancel(http, inv.id)
    assert (status, body["status"]) == (202, "RUNNING")
    error = ErrorInfo(type="Cancelled", message="cancelled while it ran")
    await agent.finish(inv, number, status=CallStatus.CANCELLED, error=error)  # as the node does
    async with await sync as r:
        assert r.status == 200
        record = CallRecord.model_validate(await r.json())
    assert record.status == CallStatus.CANCELLED and record.error == error and record.node == "node-1"


async def test_an_ended_or_unknown_call(
    http: aiohttp.ClientSession, agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    call = await queue_call(http)
    inv, number = await agent.pull()
    await agent.finish(inv, number, result=[3])
    status, body = await cancel(http, call["id"])
    assert status == 409 and body["error"]["code"] == "conflict" and "DONE" in body["error"]["message"]
    for unknown in ("0123456789abcdef", "bad.id"):
        status, body = await cancel(http, unknown)
        assert status == 404 and body["error"]["code"] == "not_found"
    assert await cancel_key(nc, layout, call["id"]) is None
    assert await cancel_key(nc, layout, "0123456789abcdef") is None


async def test_a_lagging_store_is_brought_up_to_date_by_the_events(
    http: aiohttp.ClientSession, agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    call = await queue_call(http)
    inv, number = await agent.pull()
    await agent.finish(inv, number, result=[5])
    # the store has not applied the finished event yet: it still says QUEUED
    async with fake_store(nc, layout, [call_record(number, CallStatus.QUEUED, id=call["id"])]):
        status, _ = await cancel(http, call["id"])
    assert status == 409
    assert (await finished(nc, layout, call["id"])).status == CallStatus.DONE


async def test_a_final_event_stored_first_wins_over_the_cancel(nc: Client, layout: Layout) -> None:
    """The race the reads cannot close: the call ends between the check and the cancel's
    publish. The cancel's event is stored only on an empty subject."""
    js = nc.jetstream()
    cancels = Cancels(js, layout.events_stream, await js.key_value(layout.cancels_bucket))
    subject = layout.event("c1", "finished")
    done = Finished(call_id="c1", number=1, status=CallStatus.DONE)
    await js.publish(subject, encode(done), stream=layout.events_stream)
    cancelled = encode(Finished(call_id="c1", number=1, status=CallStatus.CANCELLED))
    assert not await cancels.record_cancelled(subject, cancelled, "c1.finished.cancel")
    assert (await finished(nc, layout, "c1")).status == CallStatus.DONE
    other = layout.event("c2", "finished")
    assert await cancels.record_cancelled(other, cancelled, "c2.finished.cancel")
    # a second gateway's cancel of the same call finds it there (and answers CANCELLED from it)
    assert not await cancels.record_cancelled(other, cancelled, "c2.finished.cancel")
    info = await js.stream_info(layout.events_stream, subjects_filter=other)
    assert info.state.subjects == {other: 1}


async def test_cancel_over_nats_as_the_invoker_user(
    http: aiohttp.ClientSession, nats_as: NatsAs, layout: Layout, agent: FakeAgent
) -> None:
    invoker = await nats_as("invoker")
    call = await queue_call(http)
    reply = await nats_request(invoker, layout.cancel(call["id"]), b"")
    assert json.loads(reply.data) == {"id": call["id"], "status": "CANCELLED", "cancel_requested": True}
    reply = await nats_request(invoker, layout.cancel(call["id"]), b"")
    assert (reply.headers or {}).get("Nats-Service-Error-Code") == "409"
    reply = await nats_request(invoker, layout.cancel("nope"), b"")
    assert (reply.headers or {}).get("Nats-Service-Error-Code") == "404"


async def test_a_queued_call_with_a_callback_url_is_handed_to_the_dispatcher(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    hook = "https://example.test/hook"
    async with fake_store(nc, layout, [call_record(9, CallStatus.QUEUED, id="cb9", callback_url=hook)]):
        status, body = await cancel(http, "cb9")
    assert (status, body["status"]) == (202, "CANCELLED")
    stored = await nc.jetstream().get_last_msg(layout.events_stream, layout.callback_due("cb9"))
    copy = decode(Finished, stored.data or b"")
    assert (copy.status, copy.callback_url, copy.number) == (CallStatus.CANCELLED, hook, 9)
