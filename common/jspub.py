"""Publishing to JetStream and waiting for the PubAck, for the per-call hot path.

``JetStreamContext.publish`` does the right thing, but every call pays for nats-py's
request: a NUID and a random token, a future with a done callback and an
``asyncio.wait_for`` per request, and a dataclass ``from_response`` for the PubAck. Here one
subscription (``<inbox>.*``) takes every PubAck of this connection, a request is a counter
and one timer, and the PubAck is read from its JSON. A sync call makes two such publishes
(the invocation and its Finished event), so the gateway and the agent each save one. The
CPU per publish of both is measured by ``python -m bench.publish`` (docs/benchmarks.md).

Same contract as ``JetStreamContext.publish``: returns ``PubAck``; raises
``nats.errors.TimeoutError`` when no PubAck comes in time, ``NoStreamResponseError`` when no
stream takes the subject, and the ``APIError`` subclass of the stream's error otherwise.
Subscriptions survive reconnects (nats-py replays them), so does this one.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header, PubAck
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from common.logs import fields

log = logging.getLogger(__name__)

# What a request or publish raises while NATS is away: no answer in time, no stream or
# service answering yet (JetStream loading after a restart), the connection reconnecting.
NATS_AWAY: tuple[type[Exception], ...] = (
    TimeoutError,  # nats.errors.TimeoutError is one
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
)
# Between two tries of a publish that found NATS away.
RETRY_S = 1.0


class Publishes(Protocol):
    """What ``JetStreamContext`` and :class:`JsPublisher` have in common (and what the log
    publisher and the queueing use, so that tests can pass a fake)."""

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck: ...


class JsPublisher:
    def __init__(self, nc: Client, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._prefix = nc.new_inbox() + "."
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._sent = 0
        self._sub: Subscription | None = None
        self._subscribing = asyncio.Lock()

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        if self._sub is None:
            await self._subscribe()
        if stream is not None:
            headers = {**(headers or {}), Header.EXPECTED_STREAM: stream}
        self._sent += 1
        token = str(self._sent)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = future
        timer = loop.call_later(self._timeout if timeout is None else timeout, _expire, future)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
        return _pub_ack(msg)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error:  # the connection may be closing with it
                pass

    async def _subscribe(self) -> None:
        async with self._subscribing:
            if self._sub is None:
                self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject[len(self._prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)


def _expire(future: "asyncio.Future[Msg]") -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


def _pub_ack(msg: Msg) -> PubAck:
    if not msg.data and msg.headers and msg.headers.get(Header.STATUS) == "503":
        raise NoStreamResponseError  # no responders: no stream takes this subject
    resp = json.loads(msg.data)
    if "error" in resp:
        APIError.from_error(resp["error"])  # raises the matching subclass
    return PubAck(stream=resp["stream"], seq=resp["seq"], domain=resp.get("domain"), duplicate=resp.get("duplicate"))


async def publish_patiently(
    publisher: Publishes,
    subject: str,
    data: bytes,
    patience_s: float,
    waiting: Callable[[], Awaitable[None]] | None = None,
    *,
    stream: str | None = None,
    headers: dict[str, str] | None = None,
    retry_s: float = RETRY_S,
) -> PubAck:
    """``publisher.publish`` tried again every ``retry_s`` while it fails with
    :data:`NATS_AWAY`, for up to ``patience_s`` (0: once); ``waiting()`` runs after each
    failed try (a work item's ``in_progress``). The last error is raised past the patience."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + patience_s
    tries = 0
    while True:
        try:
            ack = await publisher.publish(subject, data, stream=stream, headers=headers)
        except NATS_AWAY as err:
            tries += 1
            if loop.time() + retry_s > give_up_at:
                raise
            if tries == 1:
                log.warning("publish.waiting_for_nats", extra=fields(subject=subject, error=repr(err)))
            if waiting is not None:
                await waiting()
            await asyncio.sleep(retry_s)
            continue
        if tries:
            log.info("publish.resumed", extra=fields(subject=subject, tries=tries + 1))
        return ack
