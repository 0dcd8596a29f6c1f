"""The throughput floor of this machine for the platform's shape: HTTP in, NATS to another
process, the answer back, nothing else (no JetStream, no container, no store, no records).

    python -m bench.pipeline_floor http <nats_url> <port>   # aiohttp: POST /x -> nats request
    python -m bench.pipeline_floor echo <nats_url>          # answers every request at once

Each part is its own process on uvloop, as the services are; the benchmark drives the HTTP
side with the same client and concurrency as the platform's throughput levels, in the same
run, so that a platform figure can be read as a fraction of what this machine does at all
with Python, HTTP and NATS (its speed moves by ±20% over an hour).
"""

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
from aiohttp import web
from nats.aio.msg import Msg

from bench.client import Caller, closed_loop
from common.lifecycle import run_loop
from common.natsserver import NatsServer

SUBJECT = "floor.echo"


async def _http(nats_url: str, port: int) -> None:
    nc = await nats.connect(nats_url)

    async def handle(request: web.Request) -> web.Response:
        msg = await nc.request(SUBJECT, await request.read(), timeout=10)
        return web.Response(body=msg.data, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/functions/{name}/invoke", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def _echo(nats_url: str) -> None:
    nc = await nats.connect(nats_url)

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"status":"DONE","result":' + msg.data + b"}")

    await nc.subscribe(SUBJECT, cb=answer)
    await asyncio.Event().wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _pipeline(work: Path) -> AsyncIterator[int]:
    port = _free_port()
    async with NatsServer(work / "nats") as server:
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.pipeline_floor", *args)
            for args in (("echo", server.url), ("http", server.url, str(port)))
        ]
        try:
            deadline = time.monotonic() + 20
            while True:  # until the HTTP side answers end to end
                try:
                    status, _ = await Caller("127.0.0.1", port).post_json("/v1/functions/x/invoke", {})
                    if status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the pipeline floor did not come up")
                await asyncio.sleep(0.1)
            yield port
        finally:
            for p in procs:
                p.kill()
                await p.wait()


async def throughput(work: Path, concurrency: int, seconds: float, max_calls: int) -> float:
    """Calls per second of the bare pipeline with ``concurrency`` closed-loop clients."""
    async with _pipeline(work) as port:
        caller = Caller("127.0.0.1", port)
        try:
            await closed_loop(caller, "x", concurrency, max_calls=20 * concurrency, max_s=1.0)  # warm up
            load = await closed_loop(caller, "x", concurrency, max_calls=max_calls, max_s=seconds)
        finally:
            await caller.close()
        if not all(c.ok for c in load.calls):
            raise RuntimeError("the pipeline floor failed calls")
        return load.throughput


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    run_loop(_http(url, int(sys.argv[3])) if mode == "http" else _echo(url))
