"""A lean pull consumer: batches from a durable JetStream consumer, [] when idle.

nats-py's ``PullSubscription.fetch`` waits for each message of a batch with its own task,
``wait_for`` and uuid (~70 µs a message on a 2-core machine: more than the database write).
Here pull requests go straight to the JetStream API (``$JS.API.CONSUMER.MSG.NEXT``) and the
deliveries land through a plain subscription callback in a buffer, a few µs each:

- a fetch first asks for what is available now (``no_wait``): the server sends up to
  ``batch`` messages, then a 404 status if it had fewer;
- when nothing was available it long-polls for one message (``expires`` within the fetch
  timeout), so an idle store wakes up as soon as an event is published; the next fetch then
  takes what piled up behind it.

Each request has its own reply subject, so a late status (408 of a request the client gave
up on) cannot end a newer one. Deliveries are JetStream messages as usual: ``ack``/``nak``/
``term`` work on them.
"""

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, Header

from store.errors import StoreError

log = logging.getLogger(__name__)

# A long poll expires this much before the fetch gives up, so its 408 usually comes back first.
_EXPIRES_MARGIN_S = 0.05


class ConsumerGone(StoreError):
    """The durable consumer does not answer (deleted, or the stream is gone): bind again."""


class PullConsumer:
    """``await PullConsumer.bind(nc, stream, consumer)``, then ``fetch`` batches, then ``close``."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self._nc = nc
        self._next_subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._requests = 0
        # Reply subject of the open request (None: none open) and what it may still deliver.
        self._open: str | None = None
        self._due = 0
        self._error: str | None = None
        self._changed = asyncio.Event()

    @classmethod
    async def bind(cls, nc: Client, stream: str, consumer: str) -> "PullConsumer":
        pull = cls(nc, stream, consumer)
        pull._sub = await nc.subscribe(f"{pull._inbox}.*", cb=pull._on_msg)
        return pull

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; waits up to ``timeout`` for the first, [] if none came.

        Raises :class:`ConsumerGone` when the consumer no longer answers.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._raise_error()
        if len(self._buffer) < batch and self._open is None:
            await self._request({"batch": batch - len(self._buffer), "no_wait": True})
        await self._until(lambda: len(self._buffer) >= batch or self._open is None, deadline)
        left = deadline - loop.time()
        if not self._buffer and self._open is None and left > 2 * _EXPIRES_MARGIN_S:
            # Nothing now: wait for the first event to come, without holding up the next ones.
            await self._request({"batch": 1, "expires": int((left - _EXPIRES_MARGIN_S) * 1e9)})
            await self._until(lambda: bool(self._buffer) or self._open is None, deadline)
        self._raise_error()
        if self._open is not None and loop.time() >= deadline:
            # Given up on (a reconnect lost it, say): its late deliveries are still buffered.
            self._open = None
        return [self._buffer.popleft() for _ in range(min(batch, len(self._buffer)))]

    async def close(self) -> None:
        """Unsubscribe, and hand back what was delivered but not fetched (redelivered now
        rather than after ack_wait)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
            while self._buffer:
                await self._buffer.popleft().nak()
        except Exception:
            log.debug("store.pull.close_failed", exc_info=True)

    async def _request(self, body: dict[str, object]) -> None:
        self._requests += 1
        self._open = f"{self._inbox}.{self._requests}"
        self._due = int(str(body["batch"]))
        # Only a pull request's own JSON: the JetStream API takes no schemas model.
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=self._open)

    async def _until(self, done: Callable[[], bool], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not done():
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                return

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get(Header.STATUS) if msg.headers else None
        if not status:
            self._buffer.append(msg)
            self._due -= 1
            if self._due <= 0:
                self._open = None
        elif msg.subject == self._open and status != "100":  # 100: an idle heartbeat
            # 404 no messages, 408 expired, 409 (max ack pending, consumer deleted...): the
            # request is over. 503: nobody serves the consumer's API subject.
            self._open = None
            description = (msg.headers or {}).get(Header.DESCRIPTION, "")
            if status == "503" or "deleted" in description.lower():
                self._error = f"{status} {description}".strip()
        self._changed.set()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise ConsumerGone(f"consumer {self._next_subject.rsplit('.', 1)[-1]}: {error}")
