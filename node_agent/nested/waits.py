"""Waiting for nested calls to finish.

A child invocation carries a ``Faas-Reply-To`` header naming a subject of this node's one
reply subscription (``<inbox>.<child id>``): the agent that runs the child publishes its
``finished`` event there before the durable copy (as for a gateway's sync call). Core NATS
is at most once, so a child still unanswered after ``poll_s`` is looked up in the events
stream, and again every ``poll_s``.
"""

import asyncio
import contextlib
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from common.events import last_event
from common.logs import fields
from schemas import Finished, InvalidMessage, Layout, decode_event

log = logging.getLogger(__name__)


class ChildWaits:
    def __init__(self, nc: Client, js: JetStreamContext, layout: Layout, poll_s: float) -> None:
        self._nc, self._js, self._layout = nc, js, layout
        self._poll_s = poll_s
        self._inbox = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[Finished]] = {}
        self._sub: Subscription | None = None

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing with it
                await sub.unsubscribe()
        for future in self._waiting.values():
            future.cancel()

    def reply_to(self, child: str) -> str:
        return f"{self._inbox}.{child}"

    def expect(self, child: str) -> None:
        """Listen for ``child``'s end; call before publishing it."""
        self._waiting[child] = asyncio.get_running_loop().create_future()

    def forget(self, child: str) -> None:
        future = self._waiting.pop(child, None)
        if future is not None and not future.done():
            future.cancel()

    async def wait(self, child: str) -> Finished:
        """The child's ``finished`` event (``expect`` first); cancel to stop waiting."""
        future = self._waiting[child]
        try:
            while True:
                try:
                    async with asyncio.timeout(self._poll_s):
                        return await asyncio.shield(future)
                except TimeoutError:
                    pass
                event = await self._from_stream(child)
                if event is not None:
                    return event
        finally:
            self.forget(child)

    async def _on_msg(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return
        try:
            event = decode_event(msg.data)
        except InvalidMessage as err:
            log.warning("nested.reply_invalid", extra=fields(subject=msg.subject, error=str(err)))
            return
        if isinstance(event, Finished):
            future.set_result(event)

    async def _from_stream(self, child: str) -> Finished | None:
        try:
            return await last_event(self._js, self._layout, child, Finished)
        except InvalidMessage as err:
            log.warning("nested.event_invalid", extra=fields(call=child, error=str(err)))
        except Exception as err:  # NATS trouble: the reply may still come; keep waiting
            log.warning("nested.stream_check_failed", extra=fields(call=child, error=repr(err)))
        return None
