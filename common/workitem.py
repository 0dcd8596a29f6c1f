"""One JetStream work item (an invocation, a job, a callback to deliver), from its delivery
to its ack.

A work item is a message of a durable pull consumer (``common/pull.py``) with explicit acks.
It is acked only once its final event is stored (:meth:`Delivery.finish`), so the item of a
worker that dies is redelivered; while it runs, :class:`KeepAlive` tells JetStream that it
is still being worked on, so that it is not redelivered early. Each delivery counts as an
attempt: past ``max_attempts`` an item is given up (:meth:`Delivery.exhausted`); consumers
are made with ``max_deliver = max_attempts + 1``, so the last delivery only records that.

The agent's call path goes through here once per call: nothing here makes a task, a
``wait_for`` or a dataclass per item (a keepalive's beat gets a task, but most calls end
before the first).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Self

from nats.aio.msg import Msg

from common.jspub import Publishes, publish_patiently
from common.logs import fields

log = logging.getLogger(__name__)

# How a delivery is acked once its final event is stored (default ``Msg.ack``; the agent's
# call slots ack and ask for the next call in one message, jobs wait for the server).
Ack = Callable[[Msg], Awaitable[object]]

# A work item moved to another subject (a new message: its delivery count starts again)
# carries the attempts it had before in this header; they count in :attr:`Delivery.attempt`.
PRIOR_ATTEMPTS = "Faas-Prior-Attempts"

# Keepalive beats are at least this far apart, whatever the ack wait.
MIN_KEEPALIVE_S = 0.5


def keepalive_interval(ack_wait_s: float) -> float:
    """``in_progress`` every ack_wait/3: one lost beat does not let the item be redelivered."""
    return max(ack_wait_s / 3, MIN_KEEPALIVE_S)


class Delivery:
    """A delivered work item: the message, its stream sequence and its attempt (how many
    times it has been delivered, this time included, and before it was moved:
    ``PRIOR_ATTEMPTS``)."""

    __slots__ = ("attempt", "msg", "sequence")

    def __init__(self, msg: Msg) -> None:
        self.msg = msg
        # Read from the reply subject
        # ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``
        # without building nats-py's ``Metadata`` (three frozen dataclasses and a datetime,
        # about 5% of the agent's CPU per call). Other forms (with a domain) go through nats-py.
        tokens = (msg.reply or "").split(".")
        if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
            self.sequence, self.attempt = int(tokens[5]), int(tokens[4])
        else:
            meta = msg.metadata
            self.sequence, self.attempt = meta.sequence.stream, meta.num_delivered
        if msg.headers is not None and (prior := msg.headers.get(PRIOR_ATTEMPTS, "")).isdigit():
            self.attempt += int(prior)

    def exhausted(self, max_attempts: int) -> str | None:
        """Why the item is given up if this delivery is past ``max_attempts``, else None."""
        if self.attempt > max_attempts:
            return f"gave up after {max_attempts} attempts without completing"
        return None

    def keepalive(self, ack_wait_s: float, item: str = "") -> "KeepAlive":
        """``async with delivery.keepalive(ack_wait_s, item_id):`` around the work."""
        return KeepAlive(self.msg, keepalive_interval(ack_wait_s), item)

    async def finish(
        self,
        publisher: Publishes,
        subject: str,
        data: bytes,
        *,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
        copies: Sequence[str] = (),
        ack: Ack | None = None,
        patience_s: float = 0.0,
    ) -> None:
        """Publish the final event, then a copy of it on each of ``copies`` (each stored
        before the next), then ack (``ack``, default ``msg.ack``).

        A worker that dies before the ack leaves the item to be redelivered and its final
        event published again: an id in ``headers`` (``schemas.dedup``) lets the stream
        store it once; readers of final events keep the first.

        ``patience_s``: a publish that fails because NATS is away (:data:`common.jspub.NATS_AWAY`)
        is tried again every second for up to that long, and the item is kept alive
        meanwhile (``in_progress``, sent when the connection is back), so that work done
        during an outage is recorded once NATS returns instead of being done again. A
        publish that timed out may have landed: the retry may store the event twice, which
        the readers of final events allow for."""
        await publish_patiently(
            publisher, subject, data, patience_s, self._still_working, stream=stream, headers=headers
        )
        for copy in copies:
            await publish_patiently(publisher, copy, data, patience_s, self._still_working, stream=stream)
        await (self.msg.ack() if ack is None else ack(self.msg))

    async def _still_working(self) -> None:
        try:
            await self.msg.in_progress()
        except Exception as err:  # past the outbound buffer: the ack wait may run out
            log.debug("workitem.in_progress_failed", extra=fields(error=repr(err)))


class KeepAlive:
    """``async with KeepAlive(msg, interval_s, item):`` sends ``in_progress`` for ``msg``
    every ``interval_s`` while the block runs (or from ``start()`` until ``await stop()``).

    A timer, not a task per item (most calls end before the first beat). Each beat's publish
    runs in a task owned here (one at a time, cancelled and awaited on exit). A failed beat
    (NATS reconnecting) is logged, not raised: the next one tries again.
    """

    __slots__ = ("_beat", "_interval", "_item", "_loop", "_msg", "_timer")

    def __init__(self, msg: Msg, interval_s: float, item: str = "") -> None:
        self._msg = msg
        self._interval = interval_s
        self._item = item
        self._timer: asyncio.TimerHandle | None = None
        self._beat: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(self._interval, self._tick)
        return self

    async def stop(self) -> None:
        """No more beats; one in flight is cancelled. Idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        beat, self._beat = self._beat, None
        if beat is not None and not beat.done():
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    def _tick(self) -> None:
        if self._beat is None or self._beat.done():  # a beat still hanging is not doubled
            self._beat = self._loop.create_task(self._in_progress(), name=f"keepalive:{self._item}")
        self._timer = self._loop.call_later(self._interval, self._tick)

    async def _in_progress(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception as err:
            log.warning("workitem.keepalive_failed", extra=fields(item=self._item, error=repr(err)))
