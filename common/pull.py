"""A lean pull consumer: batches from a durable JetStream consumer, [] when idle. The store
takes batches of events with it; node agents take one invocation per free slot.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with its own task,
``wait_for`` and uuid, which cost the store more than its database write. Here pull requests
go straight to the JetStream API (``$JS.API.CONSUMER.MSG.NEXT``) and the deliveries land
through a plain subscription callback in a buffer.

One pull request is kept open all the time (as nats.go's ``Consume`` does): it asks for a
whole batch and expires after ``request_expires_s``, and the server sends each event as soon
as it is published. A fetch takes what the buffer holds, or waits for the first delivery;
a new request goes out when the open one is used up or expired. So a trickle of events costs
one delivery and one ack each, not a request, a "no messages" status and a long poll per
batch; an idle store sends one request per expiry.

Each request has its own reply subject, so a late status (408 of a request given up on)
cannot end a newer one. Deliveries are JetStream messages as usual: ``ack``/``nak``/``term``
work on them.

A worker that has just finished a message can ack it and ask for the next one in the same
message (:meth:`PullConsumer.ack_next`, JetStream's ``+NXT``, waiting a moment or not at
all): under load that saves a pull request and a round trip per message, and the worker
keeps the slot it had. Deliveries do not say which request they answer, so each one goes to
the oldest waiting ``ack_next``, then to the buffer; every request ends in exactly one
delivery or one status, so counting keeps each waiter and the open request right.

A consumer that was deleted (a gateway's rescue of a node it thought dead, an operator, a
stream recreated) answers no more: given its ``config`` at bind, the consumer is made again
with that config the first time a request finds it gone, and the pull goes on; without it
(a consumer another worker may delete on purpose), :class:`ConsumerGone` is raised. While
the connection is down no pull request is sent (it would be buffered and replayed, stale,
at the reconnect): a fetch waits for the connection and the next request goes out then.

A consumer polled among others (the job intake's ten priority levels) must not keep a
request open: :meth:`PullConsumer.next_now` sends a ``no_wait`` request for one message,
which the server answers at once with the message or "404 No Messages". It waits like an
``ack_next`` (the same counting), so both may be used on one consumer.
"""

import asyncio
import json
import logging
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, ConsumerConfig, Header

from common.logs import fields

log = logging.getLogger(__name__)

# A request that neither delivered its batch nor ended with a status this long after it
# expired was lost (a reconnect in between): another one goes out.
_LOST_AFTER_S = 1.0
# After a request ended at once with an error status (409...), wait this long before the
# next one, so that a persistent error does not turn into a busy loop.
_ERROR_PAUSE_S = 0.1
# While the connection is down, a fetch looks again this often for it to be back.
_DISCONNECTED_PAUSE_S = 0.2
# One message if one is waiting, else a 404 status at once.
_NEXT_NOW = b'{"batch":1,"no_wait":true}'
# Ack and ask for one more: a message if one is waiting (or comes within the wait), else a
# 404 (no_wait) or 408 (expired) status.
_ACK_NEXT_NOW = b"+NXT " + _NEXT_NOW
# Reply subjects of single-message requests (ack_next, next_now): <inbox>.n<count> (a
# fetch's pull request's: <inbox>.<count>).
_NEXT_TOKEN = "n"
# Statuses that end a single-message request as expected: nothing came.
_NOTHING = ("404", "408")


class ConsumerGone(Exception):
    """The durable consumer does not answer (deleted, or the stream is gone): bind again."""


class PullConsumer:
    """``await PullConsumer.bind(nc, stream, consumer)``, then ``fetch`` batches, then ``close``."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        request_expires_s: float = 1.0,
        config: ConsumerConfig | None = None,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._consumer = consumer
        # The durable consumer's config, to make it again when it is found gone (None: raise).
        self._config = config
        self.recreated = 0
        self._next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._expires_s = max(0.1, request_expires_s)
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._requests = 0
        # Reply subject of the open request (None: none open), what it may still deliver,
        # and when it counts as lost.
        self._open: str | None = None
        self._due = 0
        self._lost_at = 0.0
        self._paused_until = 0.0
        self._stopping = False
        self._error: str | None = None
        self._changed = asyncio.Event()
        # A delivery wakes a waiting fetch only once the buffer holds this many: lingering
        # for a full batch costs one wake-up, not one per delivery.
        self._wake_at = 1
        self._bodies: dict[int, bytes] = {}
        # ack_next waiters by their request's reply subject, oldest first
        self._next: dict[str, asyncio.Future[Msg | None]] = {}
        self._next_prefix = f"{self._inbox}.{_NEXT_TOKEN}"

    @property
    def next_subject(self) -> str:
        """Where the consumer's pull requests go (``$JS.API.CONSUMER.MSG.NEXT.…``)."""
        return self._next_subject

    @classmethod
    async def bind(
        cls,
        nc: Client,
        stream: str,
        consumer: str,
        request_expires_s: float = 1.0,
        config: ConsumerConfig | None = None,
    ) -> "PullConsumer":
        """``config``: the durable consumer's, to re-create it (same name) if it is deleted."""
        pull = cls(nc, stream, consumer, request_expires_s, config)
        pull._sub = await nc.subscribe(f"{pull._inbox}.*", cb=pull._on_msg)
        return pull

    async def fetch(self, batch: int, timeout: float, linger: float = 0.0) -> list[Msg]:
        """Up to ``batch`` messages; waits up to ``timeout`` for the first, [] if none came
        (or ``stop_requesting()`` was called). With ``linger``, a batch not yet full waits
        that much longer for more (fewer, larger transactions under a trickle).

        Raises :class:`ConsumerGone` when the consumer no longer answers and cannot be made
        again (no ``config``, or NATS refused).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._stopping:
            if self._error is not None:
                await self._recreate_or_raise()
            if len(self._buffer) < batch:
                await self._ensure_request(batch)
            if self._buffer or not await self._wait_change(deadline):
                break
        if linger > 0 and 0 < len(self._buffer) < batch and not self._stopping:
            until = min(loop.time() + linger, deadline)
            self._wake_at = batch
            try:
                while len(self._buffer) < batch and await self._wait_change(until) and not self._stopping:
                    pass
            finally:
                self._wake_at = 1
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def ack_next(self, msg: Msg, wait_s: float = 0.0) -> "asyncio.Future[Msg | None]":
        """Ack ``msg`` (a delivery of this consumer) and ask for the next message in the same
        protocol message. The returned future gives that message, or None if none came
        within ``wait_s`` (0: none was waiting), the answer was lost, or the consumer
        closed. The ack is what ``msg.ack()`` sends, with the request after it."""
        if self._sub is None or self._stopping:
            await msg.ack()
            return _none()
        body = _ACK_NEXT_NOW if wait_s <= 0 else b'+NXT {"batch":1,"expires":%d}' % int(wait_s * 1e9)
        return await self._request_one(msg.reply, body, max(wait_s, 0.0) + _LOST_AFTER_S)

    async def next_now(self, timeout: float = _LOST_AFTER_S) -> Msg | None:
        """One message if one is ready for delivery now, else None, leaving no request open
        (a ``no_wait`` pull request of one). None too if no answer came within ``timeout``
        or the consumer is closed.

        Raises :class:`ConsumerGone` when the consumer no longer answers and cannot be made
        again (no ``config``, or NATS refused).
        """
        if self._error is not None:
            await self._recreate_or_raise()
        if self._sub is None or self._stopping:
            return None
        msg = await (await self._request_one(self._next_subject, _NEXT_NOW, timeout))
        if msg is None and self._error is not None:
            await self._recreate_or_raise()
        return msg

    async def _request_one(self, subject: str, body: bytes, lost_after_s: float) -> "asyncio.Future[Msg | None]":
        """Send a request for one message whose answer is awaited by the returned future."""
        loop = asyncio.get_running_loop()
        self._requests += 1
        reply = f"{self._next_prefix}{self._requests}"
        future: asyncio.Future[Msg | None] = loop.create_future()
        self._next[reply] = future
        await self._nc.publish(subject, body, reply=reply)
        # The request ends in a delivery or a status; one lost in a reconnect must not hold
        # its caller (and the caller's slot) for ever.
        timer = loop.call_later(lost_after_s, self._give_up_next, reply)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    def stop_requesting(self) -> None:
        """Send no more pull requests; a waiting ``fetch`` returns what it has at once."""
        self._stopping = True
        self._changed.set()

    async def settle(self) -> None:
        """Stop requesting and wait for the open request to end (it expires within
        ``request_expires_s``): after this, ``fetch`` returns all that was delivered."""
        self.stop_requesting()
        if self._open is not None and self._sub is not None:
            # Deliveries to a closed subscription would wait for ack_wait: take them in.
            await self._wait_closed(asyncio.get_running_loop().time() + self._expires_s + 0.1)

    async def close(self, settle: bool = True) -> None:
        """Settle (unless told not to), unsubscribe, and hand back what was delivered but not
        fetched. A nak'd message goes to the next pull request at once (but counts as pending
        until one comes): applying it before closing is better, see :meth:`settle`."""
        if self._sub is None:
            return
        try:
            if settle:
                await self.settle()
            else:
                self.stop_requesting()
        except Exception:
            log.debug("pull.settle_failed", exc_info=True)
        sub, self._sub = self._sub, None
        if sub is None:
            return
        for future in self._next.values():
            if not future.done():
                future.set_result(None)
        self._next.clear()
        try:
            await sub.unsubscribe()
            while self._buffer:
                await self._buffer.popleft().nak()
        except Exception:
            log.debug("pull.close_failed", exc_info=True)

    async def _ensure_request(self, batch: int) -> None:
        now = asyncio.get_running_loop().time()
        if self._open is not None and now < self._lost_at:
            return
        if now < self._paused_until:
            return
        if not self._nc.is_connected:  # reconnecting: a buffered request would be stale
            self._open = None  # and the open one is lost with the connection
            self._paused_until = now + _DISCONNECTED_PAUSE_S
            return
        self._requests += 1
        self._open = f"{self._inbox}.{self._requests}"
        self._due = batch
        self._lost_at = now + self._expires_s + _LOST_AFTER_S
        await self._nc.publish(self._next_subject, self._request_body(batch), reply=self._open)

    def _request_body(self, batch: int) -> bytes:
        body = self._bodies.get(batch)
        if body is None:  # a few batch sizes per consumer, encoded once
            # Only a pull request's own JSON: the JetStream API takes no schemas model.
            body = self._bodies[batch] = json.dumps({"batch": batch, "expires": int(self._expires_s * 1e9)}).encode()
        return body

    async def _wait_change(self, deadline: float) -> bool:
        """Wait for a delivery or status; False once ``deadline`` has passed."""
        loop = asyncio.get_running_loop()
        self._changed.clear()
        # Wake up early where the fetch has something to do: a pause is over, a request lost.
        wake = min(deadline, self._paused_until if self._open is None else self._lost_at)
        left = wake - loop.time()
        if left <= 0:
            return loop.time() < deadline
        try:
            async with asyncio.timeout(left):
                await self._changed.wait()
        except TimeoutError:
            pass
        return loop.time() < deadline

    async def _wait_closed(self, deadline: float) -> None:
        while self._open is not None and await self._wait_change(deadline):
            pass

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(Header.STATUS) if msg.headers else None
        # The oldest ack_next waiter takes any delivery: which request it answers does not
        # matter, only that each request ends once (see _next_ended).
        if not status and self._next and self._resolve_next(msg):
            return
        if not status:
            # A delivery carries the event's own subject, not the request's: it is counted
            # against the open request (a straggler of a lost one only ends it a bit early).
            self._buffer.append(msg)
            if not self._served_one() and len(self._buffer) < self._wake_at:
                return
        elif msg.subject.startswith(self._next_prefix):
            if status not in _NOTHING and not self._note_error(status, msg):
                log.warning("pull.next_status", extra=fields(consumer=self._consumer, status=_status_line(msg)))
            self._next_ended(msg.subject)
            return
        elif msg.subject == self._open and status != "100":  # 100: an idle heartbeat
            # 408 expired, 409 (max ack pending, consumer deleted...), 404: the request is
            # over. 503: nobody serves the consumer's API subject.
            self._open = None
            if status != "408":
                self._paused_until = asyncio.get_running_loop().time() + _ERROR_PAUSE_S
                self._note_error(status, msg)
        self._changed.set()

    def _note_error(self, status: str, msg: Msg) -> bool:
        """A request ended with an error status: one saying that the consumer is gone (True)
        is raised by the next fetch or next_now."""
        if status == "503" or "deleted" in (msg.headers or {}).get(Header.DESCRIPTION, "").lower():
            self._error = _status_line(msg)
            return True
        return False

    def _next_ended(self, subject: str) -> None:
        """A single-message request (ack_next, next_now) ended without a message (404, 409...)."""
        future = self._next.pop(subject, None)
        if future is not None:
            if not future.done():
                future.set_result(None)
            return
        # Its waiter already took a delivery, which was another request's: that one is over.
        if not self._resolve_next(None):
            self._served_one()
            self._changed.set()

    def _served_one(self) -> bool:
        """One message of the open request was delivered; True if that was its last."""
        self._due -= 1
        if self._due <= 0:
            self._open = None
            return True
        return False

    def _resolve_next(self, msg: Msg | None) -> bool:
        """Hand ``msg`` to the oldest ack_next still waiting (a cancelled one is skipped)."""
        while self._next:
            future = self._next.pop(next(iter(self._next)))
            if not future.done():
                future.set_result(msg)
                return True
        return False

    def _give_up_next(self, subject: str) -> None:
        future = self._next.pop(subject, None)
        if future is not None and not future.done():
            log.warning("pull.next_lost", extra=fields(consumer=self._consumer))
            future.set_result(None)

    async def recreate(self, error: str) -> None:
        """Make the consumer again from its config when a request made outside this class
        (``common.pollone``) found it gone; :class:`ConsumerGone` without a config, or when
        NATS refuses."""
        self._error = error
        await self._recreate_or_raise()

    async def _recreate_or_raise(self) -> None:
        """The consumer was found gone: make it again from its config, or raise ConsumerGone."""
        error, self._error = self._error, None
        if self._config is None:
            raise ConsumerGone(f"consumer {self._consumer}: {error}")
        try:
            # CONSUMER.CREATE of a durable that exists with this config changes nothing (a 503
            # while JetStream was still loading after a restart): only a gone one is made.
            await self._nc.jetstream().add_consumer(self._stream, self._config)
        except Exception as err:
            raise ConsumerGone(f"consumer {self._consumer}: {error}; not made again: {err!r}") from err
        self.recreated += 1
        self._open = None
        log.warning("pull.consumer_recreated", extra=fields(consumer=self._consumer, stream=self._stream, error=error))


def _status_line(msg: Msg) -> str:
    headers = msg.headers or {}
    return f"{headers.get(Header.STATUS, '')} {headers.get(Header.DESCRIPTION, '')}".strip()


def _none() -> "asyncio.Future[Msg | None]":
    future: asyncio.Future[Msg | None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
