"""Waiting for one call to finish.

The fast path is a core NATS subscription to the call's event subjects, opened before the
invocation is published. A core subscription can miss events, though: everything published
while the connection is reconnecting, and (seen with nats-server 2.15) a publish from another
connection in the instant right after the SUB. The events stream keeps every event, so while
waiting the watch also asks the stream for the call's last ``finished`` event every ``poll_s``.
"""

import asyncio
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from common.logs import fields
from gateway.errors import nats_unavailable
from schemas import CallEvent, Finished, InvalidMessage, Layout, Started, decode_event

log = logging.getLogger(__name__)


class CallWatch:
    def __init__(self, nc: Client, js: JetStreamContext, layout: Layout, call_id: str, poll_s: float) -> None:
        self._nc = nc
        self._js = js
        self._layout = layout
        self.call_id = call_id
        self._poll_s = poll_s
        self._finished: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self._sub: Subscription | None = None
        self.started: Started | None = None

    async def open(self) -> None:
        """Subscribe; call before publishing the invocation."""
        with nats_unavailable("watching the call"):
            self._sub = await self._nc.subscribe(self._layout.events_of(self.call_id), cb=self._on_msg)

    def abandon(self) -> None:
        """Stop waiting now (the gateway is stopping); ``wait`` returns None."""
        if not self._finished.done():
            self._finished.set_result(None)

    async def wait(self, wait_s: float) -> Finished | None:
        """The Finished event, or None if ``wait_s`` ran out first (or the watch was abandoned)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            remaining = deadline - loop.time()
            try:
                return await asyncio.wait_for(asyncio.shield(self._finished), max(0.0, min(remaining, self._poll_s)))
            except TimeoutError:
                pass
            event = await self._from_stream("finished")
            if isinstance(event, Finished):
                self._set_finished(event)
                return event
            if loop.time() >= deadline:
                if self.started is None and isinstance(started := await self._from_stream("started"), Started):
                    self.started = started
                return None

    async def close(self) -> None:
        if not self._finished.done():
            self._finished.cancel()
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is closing: the subscription goes with it
                log.debug("watch.unsubscribe.failed", exc_info=True)

    async def _on_msg(self, msg: Msg) -> None:
        self._take(msg.data, msg.subject)

    def _take(self, data: bytes, subject: str) -> CallEvent | None:
        try:
            event = decode_event(data)
        except InvalidMessage as err:
            log.warning("event.invalid", extra=fields(subject=subject, error=str(err)))
            return None
        if isinstance(event, Started):
            self.started = event
        elif isinstance(event, Finished):
            self._set_finished(event)
        return event

    def _set_finished(self, event: Finished) -> None:
        if not self._finished.done():
            self._finished.set_result(event)

    async def _from_stream(self, kind: str) -> CallEvent | None:
        subject = self._layout.event(self.call_id, kind)
        try:
            msg = await self._js.get_last_msg(self._layout.events_stream, subject)
        except NotFoundError:
            return None
        except Exception as err:  # NATS trouble: the subscription may still deliver; keep waiting
            log.warning("watch.stream_check.failed", extra=fields(call=self.call_id, error=repr(err)))
            return None
        return self._take(msg.data or b"", subject)
