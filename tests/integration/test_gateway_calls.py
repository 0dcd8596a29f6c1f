"""Store-backed routes (``/v1/calls``, the original ``/calls`` and ``/call/{n}``) answered by a
fake store service, and a store that is down or silent (503)."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from schemas import CallStatus, ErrorInfo, Layout
from tests.integration.test_gateway_support import call_record, fake_store, running_gateway

RECORDS = [
    call_record(1, result=[4, 6, 4, 3]),
    call_record(2, CallStatus.RUNNING, params={"roll": "1d6"}),
    call_record(3, CallStatus.ERROR, error=ErrorInfo(type="exit", message="Traceback: boom")),
    call_record(4, CallStatus.DONE, result="héllo", function="greet"),
    call_record(5, CallStatus.TIMEOUT),
    call_record(6, CallStatus.QUEUED),
    call_record(7, CallStatus.DONE, result={"a": [1, 2], "b": "é"}),
]


@pytest.fixture
async def http(nats_server: NatsServer, layout: Layout, nc: Client) -> AsyncIterator[aiohttp.ClientSession]:
    async with running_gateway(nats_server, layout, store_timeout_s=0.5) as (_, session):
        yield session


async def test_legacy_calls_pages_through_the_store(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    async with fake_store(nc, layout, RECORDS, page_size=2) as queries:
        async with http.get("/calls") as r:
            assert r.status == 200
            body = await r.json()
    assert len(queries) == 4  # 7 records, 2 per page
    assert list(body) == [f"c{n}" for n in range(1, 8)]
    assert body["c1"] == {
        "funcName": "dice",
        "params": {"roll": "4d6"},
        "callNum": 1,
        "status": "DONE",
        "result": "[4,6,4,3]",
    }
    assert body["c2"]["status"] == "PENDING" and body["c2"]["result"] == ""
    assert body["c2"]["params"] == {"roll": "1d6"}
    assert body["c3"]["status"] == "ERROR" and body["c3"]["result"] == "Traceback: boom"
    assert body["c4"]["result"] == "héllo" and body["c4"]["funcName"] == "greet"
    assert body["c5"]["status"] == "ERROR"
    assert body["c6"] == {**body["c2"], "callNum": 6, "params": {"roll": "4d6"}}
    assert body["c7"]["result"] == '{"a":[1,2],"b":"é"}'


async def test_legacy_call_by_number(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    async with fake_store(nc, layout, RECORDS):
        async with http.get("/call/1") as r:
            assert r.status == 200
            assert await r.json() == {
                "funcName": "dice",
                "params": {"roll": "4d6"},
                "callNum": 1,
                "status": "DONE",
                "result": "[4,6,4,3]",
            }
        async with http.get("/call/99") as r:
            assert r.status == 404
            assert (await r.json())["error"]["message"] == "no call 99"
        async with http.get("/call/abc") as r:
            assert r.status == 400


async def test_v1_get_call_by_id_or_number(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    async with fake_store(nc, layout, RECORDS):
        async with http.get("/v1/calls/3") as r:
            body = await r.json()
            assert body["id"] == "id3" and body["error"]["message"] == "Traceback: boom"
        async with http.get("/v1/calls/id7") as r:
            assert (await r.json())["result"] == {"a": [1, 2], "b": "é"}
        async with http.get("/v1/calls/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_v1_list_calls_passes_the_query(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    async with fake_store(nc, layout, RECORDS, page_size=2) as queries:
        async with http.get("/v1/calls", params={"status": "DONE", "limit": "2"}) as r:
            assert r.status == 200
            page = await r.json()
        assert [c["number"] for c in page["items"]] == [7, 4]
        assert page["next_cursor"] == "2"
        async with http.get(
            "/v1/calls", params={"status": "DONE", "cursor": "2", "since": "2024-01-01T00:00:00Z"}
        ) as r:
            page = await r.json()
        assert [c["number"] for c in page["items"]] == [1] and page["next_cursor"] is None
        assert queries[-1].since is not None and queries[-1].cursor == "2"
        async with http.get("/v1/calls", params={"function": "greet"}) as r:
            assert [c["number"] for c in (await r.json())["items"]] == [4]

        for bad in ({"limit": "0"}, {"status": "SLEEPING"}, {"since": "yesterday"}):
            async with http.get("/v1/calls", params=bad) as r:
                assert r.status == 400, bad
                assert next(iter(bad)) in (await r.json())["error"]["message"]


@pytest.mark.parametrize("path", ["/calls", "/call/1", "/v1/calls", "/v1/calls/1"])
async def test_store_down_is_503(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as r:
        assert r.status == 503
        body = await r.json()
    assert body["error"]["code"] == "unavailable"
    assert "store service" in body["error"]["message"] and "no responders" in body["error"]["message"]


async def test_silent_store_is_503(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    sub = await nc.subscribe(layout.store_get_call)  # takes requests, never answers
    await nc.flush()
    try:
        async with http.get("/v1/calls/1") as r:
            assert r.status == 503
            assert "did not answer in time" in (await r.json())["error"]["message"]
    finally:
        await sub.unsubscribe()
