"""Invoking: the Invocation on the runtime subject (number = stream sequence), the Accepted
event, sync calls answered from the Finished event (the test plays the node agent), waits that
run out, the ``<prefix>.call.<fn>`` NATS endpoint, and a stop that does not wait for calls."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway
from gateway.call_watch import CallWatch, Replies
from schemas import (
    Accepted,
    CallRecord,
    CallStatus,
    ErrorInfo,
    Finished,
    Layout,
    Started,
    decode,
    decode_event,
    encode,
)
from tests.integration.test_gateway_support import (
    FakeAgent,
    bearer,
    nats_request,
    register_function,
    register_runtime,
    running_gateway,
    settings_for,
)

MAX_PARAMS = 1024


@pytest.fixture
async def gw(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    async with running_gateway(nats_server.url, layout, max_params_bytes=MAX_PARAMS, sync_wait_s=10) as (
        g,
        http,
    ):
        await register_runtime(http)
        await register_function(http)
        yield g, http


@pytest.fixture
def http(gw: tuple[Gateway, aiohttp.ClientSession]) -> aiohttp.ClientSession:
    return gw[1]


@pytest.fixture
def agent(nc: Client, layout: Layout) -> FakeAgent:
    return FakeAgent(nc, layout)


async def accepted_event(nc: Client, layout: Layout, call_id: str) -> Accepted:
    msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(call_id, "accepted"))
    event = decode_event(msg.data or b"")
    assert isinstance(event, Accepted)
    return event


async def test_legacy_invoke_queues_an_invocation_and_announces_it(
    http: aiohttp.ClientSession, agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    async with http.post("/invokeFunction", json={"funcName": "dice", "params": {"roll": "4d6"}}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert set(body) == {"callNum", "callId"}

    inv, seq = await agent.pull()
    assert seq == body["callNum"]
    assert inv.id == body["callId"]
    assert (inv.function, inv.version, inv.params) == ("dice", 1, {"roll": "4d6"})
    assert inv.created_at is not None

    event = await accepted_event(nc, layout, body["callId"])
    assert (event.number, event.function, event.version, event.runtime) == (seq, "dice", 1, "pythonruntime")
    assert event.params == {"roll": "4d6"}


async def test_call_numbers_increase(http: aiohttp.ClientSession) -> None:
    numbers = []
    for _ in range(3):
        async with http.post("/invokeFunction", json={"funcName": "dice"}) as r:
            numbers.append((await r.json())["callNum"])
    assert numbers == sorted(numbers) and len(set(numbers)) == 3


async def test_v1_async_invoke_is_202_queued(http: aiohttp.ClientSession, agent: FakeAgent) -> None:
    async with http.post("/v1/functions/dice/invoke?async=true", data=b"") as r:
        assert r.status == 202
        body = await r.json()
    assert set(body) == {"id", "number", "status"} and body["status"] == "QUEUED"
    assert r.headers["Location"] == f"/v1/calls/{body['id']}"
    inv, seq = await agent.pull()
    assert (inv.id, seq, inv.params) == (body["id"], body["number"], {})


async def test_v1_sync_invoke_answers_from_the_finished_event(http: aiohttp.ClientSession, agent: FakeAgent) -> None:
    call = asyncio.create_task(http.post("/v1/functions/dice/invoke?timeout=3", json={"roll": "4d6"}))
    inv, seq = await agent.pull()
    assert inv.timeout_s == 3
    await agent.start(inv, seq)
    await agent.finish(inv, seq, result=[4, 6, 4, 3])
    async with await call as r:
        assert r.status == 200, await r.text()
        record = CallRecord.model_validate(await r.json())
    assert (record.id, record.number, record.status, record.result) == (
        inv.id,
        seq,
        CallStatus.DONE,
        [4, 6, 4, 3],
    )
    assert (record.function, record.version, record.runtime) == ("dice", 1, "pythonruntime")
    assert record.params == {"roll": "4d6"}
    assert record.node == "node-1" and record.duration_ms == 12.5 and record.attempts == 1
    assert record.created_at and record.started_at and record.finished_at


async def test_v1_sync_invoke_reports_a_failed_call(http: aiohttp.ClientSession, agent: FakeAgent) -> None:
    call = asyncio.create_task(
        http.post("/v1/functions/dice/invoke", data=b"  ", headers={"Content-Type": "application/json"})
    )
    inv, seq = await agent.pull()
    assert inv.params == {}
    await agent.finish(inv, seq, status=CallStatus.ERROR, error=ErrorInfo(type="exit", message="boom"))
    async with await call as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ERROR" and body["error"] == {"type": "exit", "message": "boom"}


async def test_sync_wait_running_out_is_202(http: aiohttp.ClientSession, agent: FakeAgent) -> None:
    async with http.post("/v1/functions/dice/invoke?wait=0.2", json={}) as r:
        assert r.status == 202
        body = await r.json()
    assert body["status"] == "QUEUED"
    inv, seq = await agent.pull()
    assert (inv.id, seq) == (body["id"], body["number"])


async def test_sync_wait_running_out_after_start_says_running(http: aiohttp.ClientSession, agent: FakeAgent) -> None:
    call = asyncio.create_task(http.post("/v1/functions/dice/invoke?wait=1", json={}))
    inv, seq = await agent.pull()
    await agent.start(inv, seq)
    async with await call as r:
        assert r.status == 202
        assert (await r.json())["status"] == "RUNNING"


@pytest.mark.parametrize("path", ["/invokeFunction", "/v1/functions/nope/invoke"])
async def test_unknown_function_is_404_naming_it(http: aiohttp.ClientSession, path: str) -> None:
    async with http.post(path, json={"funcName": "nope", "params": {}}) as r:
        assert r.status == 404
        assert "function 'nope' is not registered" in (await r.json())["error"]["message"]


async def test_bad_invoke_bodies(http: aiohttp.ClientSession) -> None:
    async with http.post("/invokeFunction", data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"].startswith("invalid JSON")
    async with http.post("/invokeFunction", json={"params": {}}) as r:
        assert r.status == 400
        assert "missing field: funcName" in (await r.json())["error"]["message"]
    async with http.post("/v1/functions/dice/invoke", data=b"[1,", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
    async with http.post("/v1/functions/dice/invoke?wait=soon", json={}) as r:
        assert r.status == 400 and "'wait'" in (await r.json())["error"]["message"]
    async with http.post("/v1/functions/dice/invoke?async=maybe", json={}) as r:
        assert r.status == 400
    async with http.post("/v1/functions/bad.name/invoke", json={}) as r:
        assert r.status == 400 and "invalid function name" in (await r.json())["error"]["message"]


async def test_params_over_the_limit_are_413(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    big = {"blob": "x" * MAX_PARAMS}
    async with http.post("/invokeFunction", json={"funcName": "dice", "params": big}) as r:
        assert r.status == 413
        assert "limit" in (await r.json())["error"]["message"]
    async with http.post("/v1/functions/dice/invoke?async=1", json=big) as r:
        assert r.status == 413
    info = await nc.jetstream().stream_info(layout.invoke_stream)
    assert info.state.messages == 0


# --- the NATS call endpoint ------------------------------------------------------------


async def test_call_endpoint_over_nats(
    gw: tuple[Gateway, aiohttp.ClientSession], agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    reply = asyncio.create_task(nats_request(nc, layout.call("dice"), b'{"roll": "2d6"}', timeout=10))
    inv, seq = await agent.pull()
    assert inv.params == {"roll": "2d6"}
    await agent.finish(inv, seq, result="seven")
    msg = await reply
    assert not (msg.headers or {}).get("Nats-Service-Error-Code")
    record = decode(CallRecord, msg.data)
    assert (record.id, record.number, record.status, record.result) == (inv.id, seq, CallStatus.DONE, "seven")


async def test_call_endpoint_errors(gw: tuple[Gateway, aiohttp.ClientSession], nc: Client, layout: Layout) -> None:
    msg = await nats_request(nc, layout.call("nope"), b"", timeout=5)
    assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "404"
    assert "'nope'" in msg.headers["Nats-Service-Error"]
    msg = await nats_request(nc, layout.call("dice"), b"{bad", timeout=5)
    assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "400"
    assert "invalid JSON" in msg.headers["Nats-Service-Error"]
    msg = await nats_request(nc, layout.call("dice"), json.dumps({"x": "y" * MAX_PARAMS}).encode(), timeout=5)
    assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "413"


async def test_call_endpoint_does_not_block_other_calls(
    gw: tuple[Gateway, aiohttp.ClientSession], agent: FakeAgent, nc: Client, layout: Layout
) -> None:
    slow = asyncio.create_task(nats_request(nc, layout.call("dice"), b'{"n": 1}', timeout=10))
    slow_inv, slow_seq = await agent.pull()
    fast = asyncio.create_task(nats_request(nc, layout.call("dice"), b'{"n": 2}', timeout=10))
    fast_inv, fast_seq = await agent.pull()
    await agent.finish(fast_inv, fast_seq, result=2)
    assert decode(CallRecord, (await fast).data).result == 2
    assert not slow.done()
    await agent.finish(slow_inv, slow_seq, result=1)
    assert decode(CallRecord, (await slow).data).result == 1


async def test_call_endpoint_wait_running_out_is_504(
    nats_server: NatsServer, layout: Layout, nc: Client, agent: FakeAgent
) -> None:
    async with running_gateway(nats_server.url, layout, sync_wait_s=0.3) as (_, http):
        await register_runtime(http)
        await register_function(http)
        msg = await nats_request(nc, layout.call("dice"), b"{}", timeout=5)
        assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "504"
        assert "did not finish within 0.3s" in msg.headers["Nats-Service-Error"]
        await agent.pull()  # the call is still queued: it goes on


async def test_stop_answers_waiting_calls_and_ends_within_a_deadline(
    nats_server: NatsServer, layout: Layout, nc: Client, agent: FakeAgent, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin.token"
    gw = Gateway(settings_for(nats_server.url, layout, sync_wait_s=60, max_sync_wait_s=60, admin_token_file=token_file))
    await gw.start()
    try:
        async with aiohttp.ClientSession(base_url=gw.url, headers=bearer(token_file.read_text().strip())) as http:
            await register_runtime(http)
            await register_function(http)
            http_call = asyncio.create_task(http.post("/v1/functions/dice/invoke", json={}))
            nats_call = asyncio.create_task(nats_request(nc, layout.call("dice"), b"{}", timeout=10))
            await agent.pull()
            await agent.pull()
            started = time.monotonic()
            await asyncio.wait_for(gw.stop(), 5)
            assert time.monotonic() - started < 5
            async with await http_call as r:
                assert r.status == 202
            msg = await nats_call
            assert msg.headers and msg.headers["Nats-Service-Error-Code"] == "503"
    finally:
        await gw.stop()


async def test_watch_falls_back_to_the_events_stream(nc: Client, layout: Layout) -> None:
    """Events the reply subject never saw (here: the watch is not even listening) are found in the stream."""
    js = nc.jetstream()
    watch = CallWatch(Replies(nc), js, layout, "call1", poll_s=0.05)
    try:
        started = Started(call_id="call1", number=1, node="n1")
        await js.publish(layout.event("call1", "started"), encode(started))
        assert await watch.wait(0.1) is None
        assert watch.started is not None and watch.started.node == "n1"

        finished = Finished(call_id="call1", number=1, status=CallStatus.DONE, result=42)
        await js.publish(layout.event("call1", "finished"), encode(finished))
        t0 = time.monotonic()
        event = await watch.wait(10)
        assert event is not None and event.result == 42
        assert time.monotonic() - t0 < 5
    finally:
        watch.close()
