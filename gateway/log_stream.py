"""Live logs over Server-Sent Events: ``GET /v1/{calls,jobs}/{id}/logs?follow=true``.

The stream sends every line since the run began, then the new ones as they come::

    event: log
    data: {"at": "...", "stream": "stdout", "text": "hello"}

    : keepalive

    event: end
    data: {"id": "...", "status": "DONE"}

and closes after ``end``. A comment line every ``keepalive_s`` keeps idle connections (and the
proxies on their way) open and finds clients that went away. When the gateway stops, every
stream closes at once (without ``end``): the client reconnects to another gateway.
"""

import asyncio
import json
import logging
from typing import Any, Literal

from aiohttp import web
from nats.js import JetStreamContext

from common.logs import fields
from gateway.errors import GatewayError, nats_unavailable, not_found, unavailable
from gateway.log_follow import Chunk, End, LogFollow
from gateway.store_client import StoreClient
from schemas import GetCall, GetJob, Layout

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def wants_stream(request: web.Request, follow: bool) -> bool:
    """``?follow=true`` or ``Accept: text/event-stream``."""
    return follow or "text/event-stream" in request.headers.get("Accept", "")


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class LogStreams:
    """The live log streams of one gateway (so that ``close_all`` can end them on stop)."""

    def __init__(
        self,
        js: JetStreamContext,
        layout: Layout,
        store: StoreClient,
        keepalive_s: float = 15.0,
        max_streams: int = 1000,
    ) -> None:
        self._js = js
        self._layout = layout
        self._store = store
        self._keepalive_s = keepalive_s
        self._max_streams = max_streams
        self._closing = asyncio.Event()
        self.open_streams = 0

    def close_all(self) -> None:
        """Gateway stopping: every stream ends now; new ones are refused (503)."""
        self._closing.set()

    async def serve(self, request: web.Request, id: str, kind: Literal["call", "job"]) -> web.StreamResponse:
        if self._closing.is_set():
            raise unavailable("the gateway is stopping")
        if self.open_streams >= self._max_streams:
            raise unavailable(f"too many live log streams on this gateway ({self._max_streams})")
        self.open_streams += 1
        follow = LogFollow(self._js, self._layout, id)
        try:
            with nats_unavailable("following the logs"):
                await follow.open()
                if not await follow.has_events() and not await self._known(id, kind):
                    raise not_found(f"no {kind} {id!r}")
            response = web.StreamResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            try:
                await self._pump(response, follow)
            except ConnectionResetError:
                log.debug("logs.stream.client_gone", extra=fields(id=id))
            except Exception:
                # Loop boundary: the headers are sent, so no error response; the client sees
                # the stream close without ``end`` and may reconnect.
                log.exception("logs.stream.failed", extra=fields(id=id))
            return response
        finally:
            self.open_streams -= 1
            await follow.close()

    async def _known(self, id: str, kind: str) -> bool:
        """No event yet: only a store that knows nothing of the id makes it a 404."""
        try:
            if kind == "job":
                await self._store.get_job(GetJob(id=id))
            else:
                await self._store.get_call(GetCall(id=id))
        except GatewayError as err:
            return err.status != 404  # the store is down: follow anyway
        return True

    async def _pump(self, response: web.StreamResponse, follow: LogFollow) -> None:
        await response.write(f": following {follow.id}\n\n".encode())
        closing: asyncio.Future[Any] = asyncio.ensure_future(self._closing.wait())
        pending: asyncio.Future[Any] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(follow.next())
                done, _ = await asyncio.wait(
                    {pending, closing}, timeout=self._keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done:
                    item, pending = pending.result(), None
                    if isinstance(item, Chunk):
                        text = "".join(sse("log", line.model_dump(mode="json")) for line in item.lines)
                        await response.write(text.encode())
                    elif isinstance(item, End):
                        await response.write(sse("end", {"id": follow.id, "status": item.status}).encode())
                        return
                elif closing in done:
                    return
                else:
                    await response.write(b": keepalive\n\n")
        finally:
            for f in (pending, closing):
                if f is not None:
                    f.cancel()
            await asyncio.gather(*(f for f in (pending, closing) if f is not None), return_exceptions=True)
