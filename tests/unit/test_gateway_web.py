"""The error middleware (one JSON error shape, aiohttp's own 413 included), /healthz, and
the original API's call shape."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.deps import DEPS
from gateway.errors import GatewayError, nats_unavailable
from gateway.legacy_format import legacy_call, legacy_calls
from gateway.routes.health import healthz
from gateway.web import error_middleware, read_body
from schemas import CallRecord, CallStatus, ErrorInfo


async def _read(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def _read_limited(request: web.Request) -> web.Response:
    return web.Response(body=await read_body(request, 10, "params"))


async def _gateway_error(request: web.Request) -> web.Response:
    raise GatewayError(409, "conflict", "already there")


async def _bug(request: web.Request) -> web.Response:
    raise KeyError("oops")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[error_middleware], client_max_size=16)
    app.router.add_post("/read", _read)
    app.router.add_post("/limited", _read_limited)
    app.router.add_get("/conflict", _gateway_error)
    app.router.add_get("/bug", _bug)
    app.router.add_get("/healthz", healthz)
    fake: Any = SimpleNamespace(nc=SimpleNamespace(is_connected=True))
    app[DEPS] = fake
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_aiohttp_413_gets_the_json_error_shape(client: TestClient[Any, Any]) -> None:
    r = await client.post("/read", data=b"x" * 100)
    assert r.status == 413
    body = await r.json()
    assert body["error"]["code"] == "payload_too_large"
    assert "Maximum request body size 16 exceeded" in body["error"]["message"]


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        await asyncio.sleep(0.05)  # the handler starts before the body has all come


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "chunked"])
async def test_read_body_takes_what_fits_and_refuses_the_rest(client: TestClient[Any, Any], streamed: bool) -> None:
    """A body that came whole with the headers, or streamed in chunks without a length."""

    def body(*parts: bytes) -> Any:
        return _chunks(*parts) if streamed else b"".join(parts)

    r = await client.post("/limited", data=body(b'{"a":', b"1}"))
    assert (r.status, await r.read()) == (200, b'{"a":1}')
    r = await client.post("/limited", data=body(b"x" * 6, b"y" * 6))
    assert r.status == 413
    assert "params is" in (await r.json())["error"]["message"]
    r = await client.post("/limited", data=body())
    assert (r.status, await r.read()) == (200, b"")


async def test_gateway_error_and_bugs(client: TestClient[Any, Any]) -> None:
    r = await client.get("/conflict")
    assert (r.status, await r.json()) == (409, {"error": {"code": "conflict", "message": "already there"}})
    r = await client.get("/bug")
    assert r.status == 500 and (await r.json())["error"]["code"] == "internal"
    r = await client.get("/missing")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_healthz_follows_the_nats_connection(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    fake: Any = client.app[DEPS].nc
    fake.is_connected = False
    r = await client.get("/healthz")
    assert r.status == 503 and "NATS is not connected" in (await r.json())["error"]["message"]


def _call(number: int, status: CallStatus, **kw: Any) -> CallRecord:
    return CallRecord(id=f"i{number}", number=number, function="dice", params={"roll": "4d6"}, status=status, **kw)


@pytest.mark.parametrize(
    ("record", "status", "result"),
    [
        (_call(1, CallStatus.QUEUED), "PENDING", ""),
        (_call(1, CallStatus.RUNNING, result="partial?"), "PENDING", ""),
        (_call(1, CallStatus.DONE, result=[4, 6, 4, 3]), "DONE", "[4,6,4,3]"),
        (_call(1, CallStatus.DONE, result={"k": "é"}), "DONE", '{"k":"é"}'),
        (_call(1, CallStatus.DONE, result="plain"), "DONE", "plain"),
        (_call(1, CallStatus.DONE, result=7), "DONE", "7"),
        (_call(1, CallStatus.DONE), "DONE", ""),
        (_call(1, CallStatus.ERROR, error=ErrorInfo(type="exit", message="boom")), "ERROR", "boom"),
        (_call(1, CallStatus.TIMEOUT), "ERROR", "TIMEOUT"),
        (_call(1, CallStatus.CANCELLED), "ERROR", "CANCELLED"),
    ],
)
def test_legacy_call_shape(record: CallRecord, status: str, result: str) -> None:
    assert legacy_call(record) == {
        "funcName": "dice",
        "params": {"roll": "4d6"},
        "callNum": 1,
        "status": status,
        "result": result,
    }


def test_legacy_calls_are_keyed_by_number_oldest_first() -> None:
    calls = legacy_calls([_call(3, CallStatus.DONE), _call(1, CallStatus.QUEUED)])
    assert list(calls) == ["c1", "c3"]


@pytest.mark.parametrize(
    "err",
    [
        nats.js.errors.NoStreamResponseError(),  # the stream's server lost (a deploy test's NATS kill)
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
    ],
)
def test_nats_failures_become_503_naming_what_was_asked(err: Exception) -> None:
    with pytest.raises(GatewayError) as caught, nats_unavailable("queueing the call"):
        raise err
    assert caught.value.status == 503 and "queueing the call" in str(caught.value)
