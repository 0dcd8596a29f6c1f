"""The callback dispatcher's own pull path on a real nats-server: a burst is delivered within
its concurrency and every message acked; a POST held longer than the ack wait is kept alive,
so the dispatcher of another gateway never gets it too."""

import asyncio
import ipaddress
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from gateway.callback_guard import CallbackGuard
from gateway.callback_post import RetryPolicy
from gateway.callbacks import CONSUMER, CallbackDispatcher
from schemas import Callback, CallStatus, Finished, Layout, decode_event, encode
from tests.integration.test_gateway_callbacks import receiving
from tests.integration.test_gateway_support import wait_until

POLICY = RetryPolicy(max_attempts=2, first_delay_s=0.01, max_delay_s=0.02, deadline_s=30, timeout_s=10)
# The receivers listen on loopback, which callbacks may not reach unless allowed.
LOCAL = CallbackGuard(allow=[ipaddress.ip_network("127.0.0.1/32")])


class HoldingReceiver:
    """Answers 200 after ``hold_s``; counts the POSTs and the most it had at once."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.calls: list[str] = []
        self.now = 0
        self.most = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.headers["X-Faas-Call-Id"])
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.hold_s)
        finally:
            self.now -= 1
        return web.Response(status=200)


@asynccontextmanager
async def dispatching(gateway_nc: Client, layout: Layout, **kw: Any) -> AsyncIterator[CallbackDispatcher]:
    dispatcher = CallbackDispatcher(gateway_nc, gateway_nc.jetstream(), layout, POLICY, guard=LOCAL, **kw)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace_s=5)


async def finished_with_callback(nc: Client, layout: Layout, url: str) -> str:
    call_id = "c" + secrets.token_hex(6)
    event = Finished(call_id=call_id, number=1, status=CallStatus.DONE, function="f", callback_url=url)
    await nc.jetstream().publish(layout.callback_due(call_id), encode(event), stream=layout.events_stream)
    return call_id


async def callback_stored(nc: Client, layout: Layout, call_id: str) -> bool:
    try:
        msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "callback"))
    except NotFoundError:
        return False
    event = decode_event(msg.data or b"")
    return isinstance(event, Callback) and event.outcome.delivered


async def test_a_burst_is_delivered_within_the_concurrency_and_every_message_acked(
    nc: Client, layout: Layout, gateway_nc: Client
) -> None:
    receiver = HoldingReceiver(hold_s=0.02)
    async with receiving(receiver) as url, dispatching(gateway_nc, layout, concurrency=2):  # type: ignore[arg-type]
        ids = [await finished_with_callback(nc, layout, url) for _ in range(10)]

        async def all_stored() -> bool:
            return all([await callback_stored(nc, layout, i) for i in ids])

        await wait_until(all_stored, 20, "every callback event")
        info = await nc.jetstream().consumer_info(layout.events_stream, CONSUMER)
        assert info.num_pending == 0 and info.num_ack_pending == 0
    assert sorted(receiver.calls) == sorted(ids)  # each POSTed once
    assert receiver.most <= 2


async def test_a_post_held_past_the_ack_wait_is_kept_alive_not_redelivered(
    nc: Client, layout: Layout, gateway_nc: Client
) -> None:
    receiver = HoldingReceiver(hold_s=2.5)  # ack wait 1 s: beats every 0.5 s
    async with receiving(receiver) as url, dispatching(gateway_nc, layout, ack_wait_s=1.0):  # type: ignore[arg-type]
        call_id = await finished_with_callback(nc, layout, url)
        await wait_until(lambda: _posted(receiver), 10, "the POST")
        # another gateway's dispatcher pulls all along: a message not kept alive goes to it too
        async with dispatching(gateway_nc, layout, ack_wait_s=1.0):
            await wait_until(lambda: callback_stored(nc, layout, call_id), 20, "the callback event")
    assert receiver.calls == [call_id]


async def _posted(receiver: HoldingReceiver) -> bool:
    return bool(receiver.calls)


async def test_a_dispatch_that_never_records_ends_in_a_failed_outcome_not_another_post(
    nc: Client, layout: Layout, gateway_nc: Client
) -> None:
    receiver = HoldingReceiver(hold_s=3.0)
    async with receiving(receiver) as url:  # type: ignore[arg-type]
        first = CallbackDispatcher(
            gateway_nc, gateway_nc.jetstream(), layout, POLICY, guard=LOCAL, ack_wait_s=1.0, max_dispatches=1
        )
        await first.start()
        info = await nc.jetstream().consumer_info(layout.events_stream, CONSUMER)
        assert info.config.max_deliver == 2
        call_id = await finished_with_callback(nc, layout, url)
        await wait_until(lambda: _posted(receiver), 10, "the POST")
        # This gateway stops before the outcome is recorded: its delivery is not acked.
        await first.stop(grace_s=0)
        # The redelivery is the last: its outcome is recorded as failed, without a POST.
        async with dispatching(gateway_nc, layout, ack_wait_s=1.0, max_dispatches=1):

            async def recorded() -> bool:
                try:
                    await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "callback"))
                except NotFoundError:
                    return False
                return True

            await wait_until(recorded, 20, "the callback event")
            info = await nc.jetstream().consumer_info(layout.events_stream, CONSUMER)
            assert info.num_pending == 0 and info.num_ack_pending == 0
    msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "callback"))
    event = decode_event(msg.data or b"")
    assert isinstance(event, Callback) and not event.outcome.delivered and event.outcome.attempts == 0
    assert "gave up after 1 dispatches" in (event.outcome.error or "")
    assert receiver.calls == [call_id]
