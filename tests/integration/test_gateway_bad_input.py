"""Bad input never reaches a 500: each class of it gets a clear 4xx with the API's error body
(``{"error": {"code", "message"}}``), and the gateway stays healthy; the NATS call service
(``nats req faas.call.<function>``) refuses the same params with a 400 error reply. A real
nats-server, store (SQLite) and gateway; no agent (calls queue)."""

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway
from schemas import Layout
from schemas.codec import MAX_JSON_DEPTH
from store import Store
from tests.integration.test_gateway_support import CODE, make_zip, module_form, running_gateway
from tests.integration.test_store_support import store_settings

Platform = tuple[Gateway, aiohttp.ClientSession]


@pytest.fixture
async def platform(nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path) -> AsyncIterator[Platform]:
    async with (
        Store(store_settings(nats_server, layout, tmp_path, linger_s=0)),
        running_gateway(nats_server, layout, callbacks=False, sync_wait_s=0.2, max_sync_wait_s=0.2) as (gw, http),
    ):
        async with http.post(
            "/v1/runtimes", json={"name": "rt", "image": "faas-python", "run": "python3 main.py"}
        ) as r:
            assert r.status == 201, await r.text()
        async with http.post("/v1/functions", data=module_form(make_zip(CODE), name="f", runtime="rt")) as r:
            assert r.status == 201, await r.text()
        yield gw, http
        async with http.get("/healthz") as r:
            assert r.status == 200


async def refused(r: aiohttp.ClientResponse, status: int, *fragments: str) -> str:
    assert r.status == status, await r.text()
    assert r.content_type == "application/json"
    body = await r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    message: str = body["error"]["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/functions/f/invoke?async=true", b'{"s": "\\ud800"}'),
        ("/v1/functions/f/invoke?async=true", b'"\\udfff tail"'),
        ("/invokeFunction", b'{"funcName": "f", "params": {"s": "\\uDBFF"}}'),
        ("/v1/jobs", b'{"name": "j", "container": {"image": "x"}, "metadata": {"s": "\\ud800"}}'),
        ("/v1/runtimes", b'{"name": "r2", "image": "x", "run": "\\ud800"}'),
    ],
)
async def test_a_lone_surrogate_escape_is_a_400(platform: Platform, path: str, body: bytes) -> None:
    _, http = platform
    async with http.post(path, data=body, headers=JSON) as r:
        await refused(r, 400, "surrogate")


async def test_a_surrogate_pair_is_a_character(platform: Platform) -> None:
    _, http = platform
    async with http.post("/v1/functions/f/invoke?async=true", data=b'{"s": "\\ud83d\\ude00"}', headers=JSON) as r:
        assert r.status == 202, await r.text()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
async def test_deeply_nested_json_is_a_400(platform: Platform, depth: int) -> None:
    _, http = platform
    nested = b"[" * depth + b"]" * depth
    async with http.post("/v1/functions/f/invoke?async=true", data=nested, headers=JSON) as r:
        await refused(r, 400, f"nested deeper than {MAX_JSON_DEPTH}")
    legacy = b'{"funcName": "f", "params": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    async with http.post("/invokeFunction", data=legacy, headers=JSON) as r:
        await refused(r, 400 if len(legacy) < 256 * 1024 else 413)
    # As deep as allowed goes through.
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    async with http.post("/v1/functions/f/invoke?async=true", data=ok, headers=JSON) as r:
        assert r.status == 202, await r.text()


@pytest.mark.parametrize(
    "body", [b"NaN", b'{"x": Infinity}', b"[-Infinity]", b'{"x": 1e400}', b"[" + b"9" * 400 + b".0]"]
)
async def test_numbers_json_does_not_have_are_a_400(platform: Platform, body: bytes) -> None:
    """Python reads them (1e400 as infinity), pydantic would write each as null: refused."""
    _, http = platform
    async with http.post("/v1/functions/f/invoke?async=true", data=body, headers=JSON) as r:
        await refused(r, 400, "invalid JSON")


BIG = str(1 << 63)
HUGE = "9" * 400


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/call/{BIG}", 400),
        (f"/call/{HUGE}", 400),
        (f"/v1/calls/{BIG}", 404),
        (f"/v1/calls/{'9' * 64}", 404),
        (f"/v1/calls?limit={HUGE}", 400),
        (f"/v1/jobs?limit={BIG}", 400),
        ("/v1/calls?since=9999-12-31T23:59:59-23:59", 400),
        ("/v1/calls?until=0001-01-01T00:00:00%2B23:59", 400),
        ("/v1/calls?since=0", 400),  # not seconds since the epoch: the schema says date-time
        ("/v1/calls?until=2026-12-03", 400),
        (f"/v1/functions/f/invoke?async=true&timeout={HUGE}", 400),
        ("/v1/functions/f/invoke?async=true&timeout=1e308", 202),
        ("/v1/functions/f/invoke?wait=1e400", 400),
        ("/v1/functions/f/invoke?timeout=nan", 400),
    ],
)
async def test_numbers_too_large_for_the_database_are_a_4xx(platform: Platform, path: str, status: int) -> None:
    _, http = platform
    method = http.post if "invoke" in path else http.get
    async with method(path) as r:
        if status == 202:
            assert r.status == 202, await r.text()
        else:
            await refused(r, status)


@pytest.mark.parametrize("tag", ["n", "j"])
async def test_a_cursor_past_the_database_integers_is_a_400(platform: Platform, tag: str) -> None:
    _, http = platform
    value = f"{tag}:{HUGE}" if tag == "n" else f"{tag}:9999-12-31T23:59:59-23:59|j1"
    cursor = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
    async with http.get(f"/v1/{'calls' if tag == 'n' else 'jobs'}?cursor={cursor}") as r:
        await refused(r, 400, "cursor")


async def raw_request(gw: Gateway, head: bytes) -> tuple[int, bytes]:
    """Send bytes no HTTP client library would; the status line and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "header",
    [
        b"X-Callback-Url: http://\xff\xfe/\x01",
        b"Authorization: Bearer faas_\xe9\x00x",
        b"X-Odd: a\x00b",
        b"X-Long: " + b"a" * 10_000,
        b"Bad Header: x",
        b"Host: [",
        b"Host: [::1",
        b"Host: \xff\xfe:99999999999999999999",
        b"Origin: http://[::1",
        b"Origin: \xff://\xff",
        b"Content-Length: 99999999999999999999",
        b"Content-Length: -1",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip, chunked",
    ],
)
async def test_headers_with_odd_bytes_are_a_4xx_json_error(platform: Platform, header: bytes) -> None:
    gw, http = platform
    token = http.headers["Authorization"].encode()
    head = (
        b"POST /v1/functions/f/invoke?async=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"Authorization: "
        + token.removeprefix(b"Bearer ").join([b"Bearer ", b""])
        + b"\r\n"
        + header
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    status, body = await raw_request(gw, head)
    assert 400 <= status < 500, (status, body)
    assert body.startswith(b'{"error":{"code":'), body


async def test_odd_bytes_in_a_header_the_gateway_only_compares_are_harmless(platform: Platform) -> None:
    gw, http = platform
    head = (
        b"POST /v1/functions/f/invoke?async=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
        + http.headers["Authorization"].encode()
        + b"\r\nSec-Fetch-Site: \xff\xfe\r\nAccept: \xff\r\n"
        + b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    status, body = await raw_request(gw, head)
    assert status == 202, body


async def test_a_request_line_over_the_limit_is_a_json_400(platform: Platform) -> None:
    gw, _ = platform
    status, body = await raw_request(gw, b"GET /v1/calls?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 400 and body.startswith(b'{"error":{"code":"bad_request"'), body


def form(parts: list[tuple[str, bytes]]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in parts:
        if name == "module":
            data.add_field(name, value, filename="module.zip")
        else:
            data.add_field(name, value.decode())
    return data


async def test_multipart_uploads_are_bounded(platform: Platform) -> None:
    gw, http = platform
    module = ("module", make_zip(CODE))
    base = [("name", b"g"), ("runtime", b"rt"), module]
    many = base + [(f"x{i}", b"1") for i in range(gw.settings.max_upload_parts)]
    async with http.post("/v1/functions", data=form(many)) as r:
        await refused(r, 400, f"more than {gw.settings.max_upload_parts} parts")
    big_field = [*base, ("limits", b" " * (gw.settings.max_upload_field_bytes + 1))]
    async with http.post("/v1/functions", data=form(big_field)) as r:
        await refused(r, 413, "limits is larger than the limit")
    async with http.post("/v1/functions", data=form([*base, module])) as r:
        await refused(r, 400, "'module' is given more than once")
    async with http.post("/registerFunction/rt/g", data=form([("name", b"a"), ("name", b"b"), module])) as r:
        await refused(r, 400, "more than once")
    bad_part = (
        b'--B\r\nContent-Disposition: form-data; name="\xc2\xac\x11"\r\n\r\n{}\r\n--B--\r\n'  # bytes aiohttp refuses
    )
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    async with http.post("/v1/functions", data=bad_part, headers=headers) as r:
        await refused(r, 400, "malformed multipart body")
    # Within the limits, the same upload registers.
    async with http.post("/v1/functions", data=form(base)) as r:
        assert r.status == 201, await r.text()


async def test_a_page_of_large_calls_fits_a_nats_reply(platform: Platform) -> None:
    """Six calls of 200 KB params are more than a NATS reply holds (1 MiB): each page is cut
    to what fits, with a cursor for the rest, instead of a 502."""
    _, http = platform
    params: dict[str, Any] = {"blob": "x" * 200_000}
    ids = []
    for _ in range(6):
        async with http.post("/v1/functions/f/invoke?async=true", json=params) as r:
            assert r.status == 202, await r.text()
            ids.append((await r.json())["id"])

    async def recorded() -> int:
        async with http.get("/v1/calls?limit=1&function=f") as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        return 0 if not page["items"] else page["items"][0]["number"]

    for _ in range(100):
        if await recorded() >= 6:
            break
        await asyncio.sleep(0.05)
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        async with http.get(f"/v1/calls?function=f&cursor={cursor}") as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        assert len(page["items"]) < 6
        seen += [c["id"] for c in page["items"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(ids)
    async with http.get("/calls") as r:
        assert r.status == 200, await r.text()
        assert len(await r.json()) == 6


@pytest.mark.parametrize("params", [b'{"s": "\\ud800"}', b"[" * 100_000, b"NaN", b"{"])
async def test_the_nats_call_service_refuses_the_same_params_with_a_400(
    platform: Platform, nc: Client, layout: Layout, params: bytes
) -> None:
    reply = await nc.request(layout.call("f"), params, timeout=10)
    assert reply.headers is not None and reply.headers.get("Nats-Service-Error-Code") == "400", reply.headers
    assert "invalid JSON" in reply.headers.get("Nats-Service-Error", "")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--B\r\n\r\n"),
        ("multipart/form-data; boundary=" + "b" * 200, b"--" + b"b" * 200 + b"\r\n\r\n"),
        ("multipart/form-data; boundary=B", b"no boundary here"),
        ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="module"\r\n\r\nabc'),
        ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xff\r\n--B--'),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="module"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            b"!!!\r\n--B--\r\n",
        ),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="name"\r\nContent-Type: text/plain; charset=nope\r\n\r\n'
            b"x\r\n--B--\r\n",
        ),
    ],
)
async def test_malformed_multipart_bodies_are_a_400(platform: Platform, content_type: str, body: bytes) -> None:
    _, http = platform
    async with http.post("/v1/functions", data=body, headers={"Content-Type": content_type}) as r:
        assert r.status in (400, 415), await r.text()
        await refused(r, r.status)
