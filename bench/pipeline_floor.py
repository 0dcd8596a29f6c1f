"""Throughput floors of this machine for the platform's shape: HTTP in, NATS to another
process, the answer back, and nothing else: no container, no store, no records.

* **aiohttp**: the HTTP server alone answers (an aiohttp echo): what the client and HTTP
  cost on this machine.
* **bare**: the HTTP side makes a core NATS request, a process answers it at once.
* **durable**: what the platform's delivery guarantees cost at least. The HTTP side
  publishes to a work-queue stream (file storage) and waits for the PubAck; a worker pulls
  with a free slot (8, as the agent), answers on the message's reply header, publishes a
  durable "finished" to a second stream, waits for its PubAck, and acks the message, asking
  for the next one in the same message (``ack_next``, as the agent).

    python -m bench.pipeline_floor http <aiohttp|bare|durable> <nats_url> <port>
    python -m bench.pipeline_floor echo <bare|durable> <nats_url>

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
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bench.client import Caller, closed_loop
from common.jspub import JsPublisher
from common.lifecycle import run_loop
from common.natsserver import NatsServer
from common.pull import PullConsumer

SUBJECT = "floor.echo"
WORK, EVENTS, WORKER = "FLOOR_WORK", "FLOOR_EVENTS", "worker"
SLOTS = 8


async def _http(mode: str, nats_url: str, port: int) -> None:
    if mode == "aiohttp":  # the HTTP server alone: it answers the body it got
        app = web.Application()

        async def echo(request: web.Request) -> web.Response:
            return web.Response(body=_answer(await request.read()), content_type="application/json")

        app.router.add_post("/v1/functions/{name}/invoke", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()
    nc = await nats.connect(nats_url)
    js = JsPublisher(nc)  # the platform's publisher: what the floor costs is what it needs
    inbox = nc.new_inbox()
    waiting: dict[str, asyncio.Future[bytes]] = {}
    sequence = 0

    async def on_reply(msg: Msg) -> None:
        future = waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if future is not None and not future.done():
            future.set_result(msg.data)

    await nc.subscribe(f"{inbox}.*", cb=on_reply)

    async def handle(request: web.Request) -> web.Response:
        nonlocal sequence
        body = await request.read()
        if mode == "bare":
            data = (await nc.request(SUBJECT, body, timeout=10)).data
        else:
            sequence += 1
            key = str(sequence)
            waiting[key] = future = asyncio.get_running_loop().create_future()
            await js.publish("floor.work", body, headers={"Reply": f"{inbox}.{key}", "Nats-Msg-Id": f"{inbox}{key}"})
            data = await asyncio.wait_for(future, 10)
        return web.Response(body=data, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/functions/{name}/invoke", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def _answer(data: bytes) -> bytes:
    return b'{"status":"DONE","result":' + data + b"}"


async def _echo(mode: str, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    if mode == "bare":

        async def answer(msg: Msg) -> None:
            await msg.respond(_answer(msg.data))

        await nc.subscribe(SUBJECT, cb=answer)
        await asyncio.Event().wait()
    else:
        await _work(nc)


async def _work(nc: Client) -> None:
    """The durable worker: one pull per free slot, reply, durable event, ack."""
    js = JsPublisher(nc)
    pull = await PullConsumer.bind(nc, WORK, WORKER, 2.0)
    slots = asyncio.Semaphore(SLOTS)
    running: set[asyncio.Task[None]] = set()

    async def one(msg: Msg) -> None:
        # as the agent: the ack asks for the next message, which this slot then runs
        try:
            current: Msg | None = msg
            while current is not None:
                answer = _answer(current.data)
                await nc.publish((current.headers or {})["Reply"], answer)
                await js.publish("floor.events", answer)
                current = await (await pull.ack_next(current, 0.05))
        finally:
            slots.release()

    while True:
        await slots.acquire()
        msgs = await pull.fetch(1, 2.0)
        if not msgs:
            slots.release()
        for msg in msgs:
            task = asyncio.create_task(one(msg))
            running.add(task)
            task.add_done_callback(running.discard)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _layout(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=WORK, subjects=["floor.work"], retention=RetentionPolicy.WORK_QUEUE))
    await js.add_stream(StreamConfig(name=EVENTS, subjects=["floor.events"]))
    await js.add_consumer(WORK, ConsumerConfig(durable_name=WORKER, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1))
    await nc.close()


@contextlib.asynccontextmanager
async def _pipeline(work: Path, mode: str) -> AsyncIterator[int]:
    port = _free_port()
    async with NatsServer(work / f"nats-{mode}") as server:
        if mode == "durable":
            await _layout(server.url)
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.pipeline_floor", *args)
            for args in (("echo", mode, server.url), ("http", mode, server.url, str(port)))
            if mode != "aiohttp" or args[0] == "http"
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


async def throughput(work: Path, mode: str, concurrency: int, seconds: float, max_calls: int) -> float:
    """Calls per second of the pipeline (``bare`` or ``durable``) with ``concurrency``
    closed-loop clients."""
    async with _pipeline(work, mode) as port:
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
    part, mode, url = sys.argv[1:4]
    run_loop(_http(mode, url, int(sys.argv[4])) if part == "http" else _echo(mode, url))
