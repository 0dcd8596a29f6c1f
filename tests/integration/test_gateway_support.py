"""Helpers for the gateway integration tests (no tests here): a running Gateway on port 0 with
an aiohttp client, archive builders, a fake agent (pulls invocations, publishes events) and
a fake store (a nats.micro service on the store subjects)."""

import asyncio
import io
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from nats import micro
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js.errors import NoKeysError, NotFoundError
from nats.micro.request import Request

from common.natsserver import NatsServer
from gateway import Gateway, GatewaySettings
from schemas import (
    REPLY_TO,
    CallPage,
    CallQuery,
    CallRecord,
    CallStatus,
    Finished,
    GetCall,
    InvalidMessage,
    Invocation,
    Layout,
    Started,
    decode,
    encode,
)
from schemas.stats import CallStats, StatsQuery
from schemas.tree import CallTree, GetTree, TreeCall
from tests.natsusers import service_settings

RUN = "python3 main.py"


def settings_for(server: NatsServer, layout: Layout, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        **service_settings(server, "gateway"),
        "prefix": layout.prefix,
        "host": "127.0.0.1",
        "port": 0,
        "sync_wait_s": 10.0,
        "store_timeout_s": 2.0,
        "shutdown_grace_s": 5.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_gateway(
    server: NatsServer, layout: Layout, resolver: Any = None, **overrides: Any
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    """A gateway and a session that sends the admin token the gateway wrote to its
    ``admin_token_file`` at start, as ``faas up`` has it (no header when auth is off).
    ``resolver``: the gateway's DNS for callback URLs (tests fake it)."""
    with tempfile.TemporaryDirectory(prefix="faas-gw-") as tmp:
        overrides.setdefault("admin_token_file", Path(tmp) / "admin.token")
        async with Gateway(settings_for(server, layout, **overrides), resolver=resolver) as gw:
            token_file = gw.settings.admin_token_file
            headers = bearer(token_file.read_text().strip()) if gw.settings.auth and token_file else {}
            async with aiohttp.ClientSession(base_url=gw.url, headers=headers) as http:
                yield gw, http


async def issue_token(http: aiohttp.ClientSession, role: str, **fields: Any) -> str:
    """A new token of ``role``, created through ``POST /v1/tokens`` with ``http``'s token."""
    async with http.post("/v1/tokens", json={"role": role, **fields}) as r:
        assert r.status == 201, await r.text()
        token: str = (await r.json())["token"]
        return token


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CODE = {"main.py": b"import json,sys\nprint(json.dumps(json.load(sys.stdin)))\n"}


def module_form(data: bytes, filename: str = "module.zip", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("module", data, filename=filename, content_type="application/octet-stream")
    return form


async def register_runtime(http: aiohttp.ClientSession, name: str = "pythonruntime") -> None:
    body = {"name": name, "image": "python:3.11-slim", "path": "/app", "dependencies": "", "run": RUN}
    async with http.post("/registerRuntime", json=body) as r:
        assert r.status == 200, await r.text()


async def register_function(
    http: aiohttp.ClientSession, name: str = "dice", runtime: str = "pythonruntime", data: bytes | None = None
) -> int:
    async with http.post(f"/registerFunction/{runtime}/{name}", data=module_form(data or make_zip(CODE))) as r:
        assert r.status == 200, await r.text()
        version: int = (await r.json())["version"]
        return version


async def kv_keys(nc: Client, bucket: str) -> list[str]:
    kv = await nc.jetstream().key_value(bucket)
    try:
        return await kv.keys()
    except NoKeysError:
        return []


async def stored_objects(nc: Client, layout: Layout) -> list[str]:
    store = await nc.jetstream().object_store(layout.artifacts_bucket)
    try:
        return [o.name for o in await store.list(ignore_deletes=True)]
    except NotFoundError:
        return []


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def nats_request(nc: Client, subject: str, data: bytes, timeout: float = 10.0) -> Msg:
    """``nc.request`` that tolerates the moment nats-server may still report a service that has
    just subscribed (on another connection) as having no responders."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await nc.request(subject, data, timeout=timeout)
        except NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


class FakeAgent:
    """Pulls invocations of one runtime, as a node agent would, and publishes their events."""

    def __init__(self, nc: Client, layout: Layout, runtime: str = "pythonruntime") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.layout = layout
        self.runtime = runtime
        self._sub: Any = None
        # call id -> the Faas-Reply-To subject its invocation named, as a real agent keeps it
        self.reply_to: dict[str, str] = {}
        self.started_at: dict[str, datetime] = {}

    async def pull(self, timeout: float = 5.0) -> tuple[Invocation, int]:
        """The next invocation and its stream sequence (the call number)."""
        if self._sub is None:
            self._sub = await self.js.pull_subscribe(
                self.layout.invoke_runtime(self.runtime), durable=None, stream=self.layout.invoke_stream
            )
        [msg] = await self._sub.fetch(1, timeout=timeout)
        await msg.ack()
        inv = decode(Invocation, msg.data)
        if inv.id and (reply_to := (msg.headers or {}).get(REPLY_TO)):
            self.reply_to[inv.id] = reply_to
        return inv, msg.metadata.sequence.stream

    async def start(self, inv: Invocation, number: int) -> None:
        assert inv.id is not None
        event = Started(call_id=inv.id, number=number, node="node-1", container="c-1", function=inv.function)
        self.started_at[inv.id] = event.at
        await self.js.publish(self.layout.event(inv.id, "started"), encode(event))

    async def finish(
        self,
        inv: Invocation,
        number: int,
        result: Any = None,
        status: CallStatus = CallStatus.DONE,
        **extra: Any,
    ) -> None:
        assert inv.id is not None
        event = Finished(
            call_id=inv.id,
            number=number,
            status=status,
            result=result,
            node="node-1",
            container="c-1",
            duration_ms=12.5,
            exit_code=0,
            attempt=1,
            **{"created_at": inv.created_at, "started_at": self.started_at.pop(inv.id, None), **extra},
        )
        if reply_to := self.reply_to.pop(inv.id, None):
            await self.nc.publish(reply_to, encode(event))
        await self.js.publish(self.layout.event(inv.id, "finished"), encode(event))
        if event.callback_url:
            await self.js.publish(self.layout.callback_due(inv.id), encode(event))


def call_record(number: int, status: CallStatus = CallStatus.DONE, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "id": f"id{number}",
        "number": number,
        "function": "dice",
        "version": 1,
        "runtime": "pythonruntime",
        "params": {"roll": "4d6"},
        "status": status,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return CallRecord(**values)


@asynccontextmanager
async def fake_store(
    nc: Client, layout: Layout, records: list[CallRecord], page_size: int = 2
) -> AsyncIterator[list[CallQuery]]:
    """Answers the store subjects from ``records``; yields the list queries it received."""
    queries: list[CallQuery] = []
    newest_first = sorted(records, key=lambda r: r.number, reverse=True)

    async def get(req: Request) -> None:
        try:
            key = decode(GetCall, req.data)
        except InvalidMessage as err:
            await req.respond_error("400", str(err))
            return
        for r in records:
            if r.id == key.id or r.number == key.number:
                await req.respond(encode(r))
                return
        await req.respond_error("404", f"no call {key.id or key.number}")

    async def list_calls(req: Request) -> None:
        query = decode(CallQuery, req.data)
        queries.append(query)
        start = int(query.cursor or 0)
        matching = [r for r in newest_first if query.function in (None, r.function)]
        if query.status is not None:
            matching = [r for r in matching if r.status == query.status]
        size = min(page_size, query.limit)
        items = matching[start : start + size]
        more = start + size < len(matching)
        await req.respond(encode(CallPage(items=items, next_cursor=str(start + size) if more else None)))

    async def stats(req: Request) -> None:
        # Empty statistics: what the gateway adds (the queues) and passes on is tested elsewhere.
        query = decode(StatsQuery, req.data)
        until = query.until or datetime.now(UTC)
        since = until - timedelta(seconds=query.window_s)
        empty = CallStats(since=since, until=until, step_s=query.step_s, buckets=[], finished=0, calls_per_s=0)
        await req.respond(encode(empty))

    async def tree(req: Request) -> None:
        key = decode(GetTree, req.data)
        calls = [
            TreeCall(id=r.id, number=r.number, parent=r.parent, function=r.function, status=r.status)
            for r in sorted(records, key=lambda r: r.number)
            if key.id in (r.id, r.root)
        ]
        if not calls:
            await req.respond_error("404", f"no call {key.id}")
            return
        await req.respond(encode(CallTree(root=key.id, calls=calls)))

    svc = await micro.add_service(nc, name="fake-store", version="0.0.1")
    await svc.add_endpoint(name="tree", subject=layout.store_call_tree, handler=tree)
    await svc.add_endpoint(name="get", subject=layout.store_get_call, handler=get)
    await svc.add_endpoint(name="list", subject=layout.store_list_calls, handler=list_calls)
    await svc.add_endpoint(name="stats", subject=layout.store_call_stats, handler=stats)
    # The gateway asks on another connection: make sure the server has our subscriptions.
    await nc.flush()
    try:
        yield queries
    finally:
        await svc.stop()
