"""What a web page could make a browser send to a local gateway is refused, with auth on and
with ``--no-auth``; the original route set works without a header when auth is off, as the
seed's curl examples send it."""

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from common.natsserver import NatsServer
from gateway import Gateway
from schemas import Layout
from tests.integration.test_gateway_support import (
    CODE,
    make_tgz,
    register_runtime,
    running_gateway,
)

FORGED_INVOKE = {"funcName": "dice", "params": {"roll": "4d6"}}


@pytest.fixture(params=[True, False], ids=["auth", "no-auth"])
async def gw(
    request: pytest.FixtureRequest, nats_server: NatsServer, layout: Layout, nc: Client
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    async with running_gateway(nats_server.url, layout, callbacks=False, auth=request.param) as (gw, http):
        await register_runtime(http)
        form = aiohttp.FormData()
        form.add_field("module", make_tgz(CODE), filename="dice.tar.gz")
        async with http.post("/registerFunction/pythonruntime/dice", data=form) as r:
            assert r.status == 200, await r.text()
        yield gw, http


async def invocations(nc: Client, layout: Layout) -> int:
    try:
        info = await nc.jetstream().stream_info(layout.invoke_stream)
    except NotFoundError:
        return 0
    return int(info.state.messages)


async def forge(http: aiohttp.ClientSession, headers: dict[str, str], **kw: Any) -> tuple[int, dict[str, Any]]:
    kw.setdefault("json", FORGED_INVOKE)
    async with http.post("/invokeFunction", headers=headers, **kw) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Origin": "https://evil.example"}, "Origin 'https://evil.example'"),
        ({"Origin": "null"}, "Origin 'null'"),
        # same host, another port: another local web server's page
        ({"Origin": "http://127.0.0.1:1"}, "is not this gateway's"),
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site"),
        # DNS rebinding: the page's own name, now resolving to the gateway
        ({"Host": "evil.example:8080"}, "Host 'evil.example:8080'"),
        ({"Host": "localhost.evil.example"}, "is not a name of this gateway"),
    ],
)
async def test_forged_cross_site_posts_are_403_and_run_nothing(
    gw: tuple[Gateway, aiohttp.ClientSession], nc: Client, layout: Layout, headers: dict[str, str], fragment: str
) -> None:
    _, http = gw
    before = await invocations(nc, layout)
    status, body = await forge(http, headers)
    assert status == 403 and body["error"]["code"] == "forbidden", body
    assert fragment in body["error"]["message"], body
    assert await invocations(nc, layout) == before


async def test_a_text_plain_body_dressed_as_json_is_415(
    gw: tuple[Gateway, aiohttp.ClientSession], nc: Client, layout: Layout
) -> None:
    """What a cross-site <form enctype="text/plain"> can send without a preflight."""
    _, http = gw
    before = await invocations(nc, layout)
    body = b'{"funcName": "dice", "params": {"roll": "4d6"}}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        status, answer = await forge(http, {"Content-Type": ctype}, json=None, data=body)
        assert status == 415 and answer["error"]["code"] == "unsupported_media_type", answer
        assert "application/json" in answer["error"]["message"] and ctype in answer["error"]["message"]
    form = aiohttp.FormData({"funcName": "dice"}, default_to_multipart=True)
    status, answer = await forge(http, {}, json=None, data=form)
    assert status == 415 and "multipart/form-data" in answer["error"]["message"], answer
    async with http.post("/v1/runtimes", data=b"{}", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415
    async with http.post("/v1/functions", json={"name": "x"}) as r:
        assert r.status == 415 and "multipart/form-data" in (await r.json())["error"]["message"]
    async with http.post("/v1/jobs/j1/cancel", data=b"x=1", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 415 and "takes no body" in (await r.json())["error"]["message"]
    assert await invocations(nc, layout) == before


async def test_same_origin_and_own_names_are_served(gw: tuple[Gateway, aiohttp.ClientSession]) -> None:
    gateway, http = gw
    port = gateway.port
    for headers in (
        {"Origin": f"http://127.0.0.1:{port}"},
        {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}", "Sec-Fetch-Site": "same-origin"},
        {"Host": f"[::1]:{port}"},
        {"Host": "192.0.2.7"},  # an IP literal cannot be rebound
        {"Sec-Fetch-Site": "none"},  # typed in the address bar
    ):
        status, body = await forge(http, headers)
        assert status == 200 and body["callNum"] >= 1, (headers, body)


async def test_allowed_hosts_names_the_gateway(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    async with running_gateway(nats_server.url, layout, callbacks=False, allowed_hosts=["faas.example.org"]) as (
        _,
        http,
    ):
        async with http.get("/v1/runtimes", headers={"Host": "faas.example.org"}) as r:
            assert r.status == 200
        own = {"Host": "faas.example.org", "Origin": "https://faas.example.org"}
        async with http.get("/v1/runtimes", headers=own) as r:
            assert r.status == 200
        async with http.get("/v1/runtimes", headers={"Host": "other.example.org"}) as r:
            assert r.status == 403


async def test_no_auth_serves_the_original_routes_without_a_header(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    """The README's curl examples of the original route set, as `faas up --no-auth` serves them."""
    async with running_gateway(nats_server.url, layout, callbacks=False, auth=False) as (gw, http):
        assert "Authorization" not in http.headers
        body = {"name": "pythonruntime", "image": "faas-python", "path": "/app", "run": "python3 test.py"}
        async with http.post("/registerRuntime", json=body) as r:
            assert r.status == 200 and await r.json() == {"runtime": "pythonruntime"}
        form = aiohttp.FormData()
        form.add_field("module", make_tgz(CODE), filename="dice.tar.gz")
        async with http.post("/registerFunction/pythonruntime/dice", data=form) as r:
            assert r.status == 200
        async with http.post("/invokeFunction", json=FORGED_INVOKE) as r:
            assert r.status == 200 and set(await r.json()) == {"callNum", "callId"}
        async with http.get("/functions") as r:
            assert await r.json() == ["dice"]
        assert not gw.settings.admin_token_file or not gw.settings.admin_token_file.exists()
