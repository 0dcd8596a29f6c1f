"""bench/client.py's minimal HTTP client against a real aiohttp server."""

import asyncio
from typing import Any

from aiohttp import web

from bench.client import Caller, invoke


async def _server(keepalive_timeout: float) -> tuple[web.AppRunner, int]:
    async def echo(request: web.Request) -> web.Response:
        body: Any = await request.json()
        auth = request.headers.get("Authorization")
        return web.json_response({"status": "DONE", "id": "c1", "result": body, "auth": auth})

    app = web.Application()
    app.router.add_post("/v1/functions/{name}/invoke", echo)
    runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def test_calls_reuse_a_connection_and_survive_the_server_closing_it() -> None:
    runner, port = await _server(keepalive_timeout=0.1)
    caller = Caller("127.0.0.1", port)
    try:
        first = await invoke(caller, "f", {"n": 1})
        assert first.ok and first.record["result"] == {"n": 1}
        assert len(caller._idle) == 1  # kept for the next call
        await asyncio.sleep(0.5)  # the server closes the idle connection meanwhile
        second = await invoke(caller, "f", {"n": "ü"})
        assert second.ok and second.record["result"] == {"n": "ü"}, second
    finally:
        await caller.close()
        await runner.cleanup()


async def test_a_server_that_is_gone_is_a_client_error_not_a_crash() -> None:
    runner, port = await _server(keepalive_timeout=5)
    await runner.cleanup()
    caller = Caller("127.0.0.1", port)
    result = await invoke(caller, "f", {})
    assert result.status == "CLIENT_ERROR" and not result.ok


async def test_the_token_goes_in_the_authorization_header() -> None:
    runner, port = await _server(keepalive_timeout=5)
    with_token, without = Caller("127.0.0.1", port, "faas_secret"), Caller("127.0.0.1", port)
    try:
        assert (await invoke(with_token, "f", {})).record["auth"] == "Bearer faas_secret"
        assert (await invoke(without, "f", {})).record["auth"] is None
    finally:
        await with_token.close()
        await without.close()
        await runner.cleanup()
