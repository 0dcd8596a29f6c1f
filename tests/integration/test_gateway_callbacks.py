"""Callbacks: the URL travels in the invocation and the accepted event; the dispatcher POSTs the
finished call (retrying a failing receiver), publishes a ``callback`` event, and is not held up
by a slow URL. The test plays the node agent (copying ``callback_url`` into ``finished``)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from common.natsserver import NatsServer
from schemas import Accepted, Callback, CallRecord, CallStatus, Layout, decode, decode_event
from tests.integration.test_gateway_support import (
    FakeAgent,
    register_function,
    register_runtime,
    running_gateway,
    wait_until,
)
from tests.unit.test_callback_guard import FakeDNS
from tests.unit.test_gateway_callback_post import Receiver

FAST = {
    "callback_backoff_s": 0.01,
    "callback_max_backoff_s": 0.05,
    "callback_timeout_s": 2.0,
    "callback_concurrency": 4,
    # the receivers listen on loopback, which callbacks may not reach unless allowed
    "callback_allow_networks": "127.0.0.1/32",
}


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http(nats_server: NatsServer, layout: Layout, nc: Client) -> AsyncIterator[aiohttp.ClientSession]:
    async with running_gateway(nats_server.url, layout, **FAST) as (_, session):
        await register_runtime(session)
        await register_function(session)
        yield session


async def last_event(nc: Client, layout: Layout, call_id: str, kind: str) -> Any:
    try:
        msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, kind))
    except NotFoundError:
        return None
    return decode_event(msg.data or b"")


async def callback_event(nc: Client, layout: Layout, call_id: str, timeout: float = 10) -> Callback:
    async def there() -> bool:
        return await last_event(nc, layout, call_id, "callback") is not None

    await wait_until(there, timeout, "the callback event")
    event = await last_event(nc, layout, call_id, "callback")
    assert isinstance(event, Callback)
    return event


async def invoke_async(http: aiohttp.ClientSession, **kw: Any) -> dict[str, Any]:
    async with http.post("/v1/functions/dice/invoke?async=true", json={"roll": "2d6"}, **kw) as r:
        assert r.status == 202, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_a_failing_receiver_gets_the_call_on_the_third_attempt(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    receiver = Receiver([500, 502, 200])
    async with receiving(receiver) as url:
        body = await invoke_async(http, params={"callback_url": url})
        assert body["callback_url"] == url
        agent = FakeAgent(nc, layout)
        inv, number = await agent.pull()
        assert inv.callback_url == url
        accepted = await last_event(nc, layout, body["id"], "accepted")
        assert isinstance(accepted, Accepted) and accepted.callback_url == url
        await agent.start(inv, number)
        await agent.finish(inv, number, result=[3, 5], callback_url=inv.callback_url)
        event = await callback_event(nc, layout, body["id"])
    out = event.outcome
    assert out.delivered and out.attempts == 3 and out.status_code == 200 and out.url == url
    assert event.number == number and event.function == "dice"
    assert len(receiver.requests) == 3
    headers, payload = receiver.requests[-1]
    assert headers["X-Faas-Call-Id"] == body["id"] and headers["X-Faas-Call-Status"] == "DONE"
    assert headers["Content-Type"] == "application/json"
    record = decode_event_free(payload)
    assert record["id"] == body["id"] and record["number"] == number and record["status"] == "DONE"
    assert record["result"] == [3, 5] and record["params"] == {"roll": "2d6"}
    assert record["created_at"] and record["started_at"] and record["finished_at"]
    assert record["callback_url"] == url


async def test_the_body_of_a_short_call_is_its_sync_answer_with_both_times(
    nats_server: NatsServer, nc: Client, layout: Layout
) -> None:
    """A sync call that finishes at once is never announced (no ``accepted`` event) and its
    agent may leave out ``started``: the body takes when the call was accepted and started
    from the ``finished`` event, like the sync answer."""
    receiver = Receiver([200])
    async with (
        receiving(receiver) as url,
        running_gateway(nats_server.url, layout, **FAST, announce_after_s=60) as (_, http),
    ):
        await register_runtime(http)
        await register_function(http)
        call = asyncio.create_task(
            http.post("/v1/functions/dice/invoke", json={"roll": "2d6"}, params={"callback_url": url})
        )
        agent = FakeAgent(nc, layout)
        inv, number = await agent.pull()
        assert inv.id is not None and inv.created_at is not None
        started_at = inv.created_at + timedelta(milliseconds=3)
        # What a real agent's finished event says about the call.
        about = {"function": "dice", "version": 1, "runtime": "pythonruntime", "params": inv.params}
        await agent.finish(inv, number, result=[1, 2], callback_url=url, started_at=started_at, **about)
        async with await call as r:
            assert r.status == 200, await r.text()
            answer = decode(CallRecord, await r.read())
        event = await callback_event(nc, layout, inv.id)
        assert await last_event(nc, layout, inv.id, "accepted") is None
        assert await last_event(nc, layout, inv.id, "started") is None
    assert event.outcome.delivered
    [(_, payload)] = receiver.requests
    body = decode(CallRecord, payload)
    assert body.created_at == inv.created_at and body.started_at == started_at
    assert body == answer


async def test_the_header_works_too_and_a_dead_receiver_is_reported(
    nats_server: NatsServer, nc: Client, layout: Layout
) -> None:
    async with running_gateway(nats_server.url, layout, **FAST, callback_max_attempts=2) as (_, http):
        await register_runtime(http)
        await register_function(http)
        url = "http://127.0.0.1:9/hook"  # nothing listens
        body = await invoke_async(http, headers={"X-Callback-Url": url})
        agent = FakeAgent(nc, layout)
        inv, number = await agent.pull()
        assert inv.callback_url == url
        await agent.finish(inv, number, status=CallStatus.ERROR, callback_url=url)
        event = await callback_event(nc, layout, body["id"])
    assert not event.outcome.delivered and event.outcome.attempts == 2
    assert event.outcome.status_code is None and event.outcome.error


async def test_bad_callback_urls_are_refused(http: aiohttp.ClientSession) -> None:
    for url in ("ftp://example.com/x", "https:///x", "not a url"):
        async with http.post("/v1/functions/dice/invoke?async=true", params={"callback_url": url}) as r:
            assert r.status == 400
            assert "callback URL" in (await r.json())["error"]["message"]


async def test_a_slow_receiver_does_not_hold_up_the_others(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    slow, fast = SlowReceiver(), Receiver([200])
    async with receiving(slow) as slow_url, receiving(fast) as fast_url:
        agent = FakeAgent(nc, layout)
        first = await invoke_async(http, params={"callback_url": slow_url})
        inv1, n1 = await agent.pull()
        await agent.finish(inv1, n1, callback_url=slow_url)
        await wait_until(slow.reached, 10, "the slow receiver")
        second = await invoke_async(http, params={"callback_url": fast_url})
        inv2, n2 = await agent.pull()
        await agent.finish(inv2, n2, callback_url=fast_url)
        event = await callback_event(nc, layout, second["id"])
        assert event.outcome.delivered
        assert await last_event(nc, layout, first["id"], "callback") is None  # still in flight
        slow.release()
        assert (await callback_event(nc, layout, first["id"])).outcome.delivered


async def test_calls_without_a_callback_url_are_passed_over(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    body = await invoke_async(http)
    assert "callback_url" not in body
    agent = FakeAgent(nc, layout)
    inv, number = await agent.pull()
    await agent.finish(inv, number)
    js = nc.jetstream()

    assert await last_event(nc, layout, body["id"], "finished") is not None
    await asyncio.sleep(0.5)  # time enough for a dispatcher to fetch it, were it delivered
    info = await js.consumer_info(layout.events_stream, "callbacks")
    # The dispatcher's consumer is never even handed the finished event of such a call.
    assert info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.consumer_seq == 0
    assert await last_event(nc, layout, body["id"], "callback") is None


class SlowReceiver(Receiver):
    def __init__(self) -> None:
        super().__init__([200])
        import asyncio

        self._go = asyncio.Event()

    async def reached(self) -> bool:
        return bool(self.requests)

    def release(self) -> None:
        self._go.set()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        await self._go.wait()
        return web.Response(status=200)


def decode_event_free(payload: bytes) -> dict[str, Any]:
    """The callback body is a CallRecord (HTTP, not a NATS payload)."""
    from schemas import CallRecord

    record = decode(CallRecord, payload)
    return record.model_dump(mode="json")


STRICT = {k: v for k, v in FAST.items() if k != "callback_allow_networks"}


async def test_callbacks_to_internal_hosts_are_refused_at_invoke_time(
    nats_server: NatsServer, nc: Client, layout: Layout
) -> None:
    async with running_gateway(nats_server.url, layout, **STRICT) as (_, http):
        await register_runtime(http)
        await register_function(http)
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[::1]/hook",
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://10.0.0.1/hook",
            "https://[fd00::1]/hook",
            "http://100.64.1.1/hook",
            "http://0.0.0.0:8080/hook",
        ):
            async with http.post("/v1/functions/dice/invoke?async=true", json={}, headers={"X-Callback-Url": url}) as r:
                assert r.status == 400, url
                error = (await r.json())["error"]
                assert error["code"] == "bad_request" and error["message"].startswith("callback URL refused"), url
        info = await nc.jetstream().stream_info(layout.invoke_stream)
        assert info.state.messages == 0  # none was queued


async def test_a_host_rebound_to_an_internal_address_after_the_check_is_not_connected(
    nats_server: NatsServer, nc: Client, layout: Layout
) -> None:
    """DNS rebinding: the name is public when the call is made, loopback (where a receiver
    listens) when the callback is due. The delivery resolves again and never connects."""
    dns = FakeDNS(lambda host: ["93.184.216.34"] if len(dns.lookups) <= 1 else ["127.0.0.1"])
    receiver = Receiver([200])
    async with (
        receiving(receiver) as local_url,
        running_gateway(nats_server.url, layout, resolver=dns, **STRICT) as (_, http),
    ):
        await register_runtime(http)
        await register_function(http)
        port = local_url.split(":")[2].split("/")[0]
        url = f"http://hooks.rebind.example:{port}/hook"
        body = await invoke_async(http, params={"callback_url": url})
        agent = FakeAgent(nc, layout)
        inv, number = await agent.pull()
        await agent.finish(inv, number, callback_url=url)
        event = await callback_event(nc, layout, body["id"])
        # A finished event naming a loopback URL outright (as a NATS publisher could make
        # one): refused too, without a lookup.
        direct = FakeAgent(nc, layout)
        inv2 = inv.model_copy(update={"id": "direct" + body["id"][:8]})
        await direct.finish(inv2, number + 1, callback_url=local_url)
        literal = await callback_event(nc, layout, inv2.id or "")
    assert dns.lookups == ["hooks.rebind.example", "hooks.rebind.example"]  # invoke, delivery
    for outcome in (event.outcome, literal.outcome):
        assert not outcome.delivered and outcome.attempts == 1
        assert outcome.error is not None and outcome.error.startswith("refused:") and "loopback" in outcome.error
    assert receiver.requests == []
