"""Waiting for one call to finish.

The fast path: the invocation carries a ``Faas-Reply-To`` header naming a subject of this
gateway's one long-lived reply subscription (:class:`Replies`), and the agent that runs the
call publishes its ``finished`` event there as well as to the events stream. No subscription
is made per call, so none can be missed in the instant after its SUB (seen with nats-server
2.15 when each call subscribed to its own event subjects).

Core NATS is at most once: a reply is lost if the connection is reconnecting at that moment.
The events stream keeps every event, so while waiting the watch also asks the stream for the
call's last ``finished`` event every ``poll_s``.
"""

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from common.events import Event, last_event
from common.logs import fields
from schemas import CallEvent, Finished, InvalidMessage, Layout, Started, decode_event

log = logging.getLogger(__name__)


class Replies:
    """This gateway's reply subscription: ``<inbox>.<call_id>`` -> the call's watch."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._inbox = nc.new_inbox()
        self._watches: dict[str, CallWatch] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing with it
                await sub.unsubscribe()

    def subject(self, call_id: str) -> str:
        return f"{self._inbox}.{call_id}"

    def add(self, watch: "CallWatch") -> None:
        self._watches[watch.call_id] = watch

    def remove(self, watch: "CallWatch") -> None:
        if self._watches.get(watch.call_id) is watch:
            del self._watches[watch.call_id]

    async def _on_msg(self, msg: Msg) -> None:
        watch = self._watches.get(msg.subject.rsplit(".", 1)[-1])
        if watch is not None:
            watch.take(msg.data, msg.subject)


class CallWatch:
    def __init__(self, replies: Replies, js: JetStreamContext, layout: Layout, call_id: str, poll_s: float) -> None:
        self._replies = replies
        self._js = js
        self._layout = layout
        self.call_id = call_id
        self._poll_s = poll_s
        self._finished: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self.started: Started | None = None

    @property
    def reply_to(self) -> str:
        """The subject the agent sends the finished event to (the ``Faas-Reply-To`` header)."""
        return self._replies.subject(self.call_id)

    def open(self) -> None:
        """Start listening; call before publishing the invocation."""
        self._replies.add(self)

    def abandon(self) -> None:
        """Stop waiting now (the gateway is stopping); ``wait`` returns None."""
        if not self._finished.done():
            self._finished.set_result(None)

    async def wait_reply(self, wait_s: float) -> Finished | None:
        """Wait only for the reply (no stream check): the common, short case."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._finished), wait_s)
        except TimeoutError:
            return None

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
            event = await self._from_stream(Finished)
            if event is not None:
                self._set_finished(event)
                return event
            if loop.time() >= deadline:
                if self.started is None and (started := await self._from_stream(Started)) is not None:
                    self.started = started
                return None

    def close(self) -> None:
        if not self._finished.done():
            self._finished.cancel()
        self._replies.remove(self)

    def take(self, data: bytes, subject: str) -> CallEvent | None:
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

    async def _from_stream(self, model: type[Event]) -> Event | None:
        try:
            return await last_event(self._js, self._layout, self.call_id, model)
        except InvalidMessage as err:
            log.warning("event.invalid", extra=fields(call=self.call_id, error=str(err)))
        except Exception as err:  # NATS trouble: the subscription may still deliver; keep waiting
            log.warning("watch.stream_check.failed", extra=fields(call=self.call_id, error=repr(err)))
        return None
