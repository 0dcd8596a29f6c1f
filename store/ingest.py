"""The ingest loop: events stream -> durable pull consumer -> one transaction per batch -> ack.

Delivery is at least once and :mod:`store.merge` is idempotent, so the loop acks only after
commit. A message that does not decode is logged and terminated (it would never decode, and
must not block the stream); a batch whose transaction fails is naked for redelivery later.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.exc import IntegrityError

from common.logs import fields
from schemas import CallEvent, InvalidMessage, Layout, decode_event
from store.writer import CallWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 256
    fetch_timeout_s: float = 1.0
    nak_delay_s: float = 2.0
    # Generous: a batch is acked only after its commit, and a slow disk must not stall delivery.
    max_ack_pending: int = 10_000
    ack_wait_s: float = 30.0
    # Pause after an unexpected fetch error (NATS reconnecting, consumer gone) before retrying.
    error_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.fetch_timeout_s <= 0 or self.nak_delay_s < 0:
            raise ValueError(f"invalid ingest config {self}")


class Ingest:
    """Consumes ``<prefix>.events.>`` into the calls table.

    ``await ingest.subscribe()`` once, then either ``run()`` as a long-lived task (ended by
    ``request_stop()`` after the batch in hand) or ``run_until_idle()`` for a burst.
    """

    def __init__(self, js: JetStreamContext, layout: Layout, writer: CallWriter, config: IngestConfig) -> None:
        self._js = js
        self._layout = layout
        self._writer = writer
        self._config = config
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stop = asyncio.Event()

    def consumer_config(self) -> ConsumerConfig:
        name = self._layout.store_consumer
        return ConsumerConfig(
            name=name,
            durable_name=name,
            description="store: call records",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._config.ack_wait_s,
            max_ack_pending=self._config.max_ack_pending,
            filter_subject=self._layout.events_all,
        )

    async def subscribe(self) -> None:
        """Create or update the durable consumer and bind a pull subscription to it."""
        stream = self._layout.events_stream
        config = self.consumer_config()
        # CONSUMER.CREATE without an action creates or updates: a changed config applies.
        await self._js.add_consumer(stream, config)
        old, self._sub = self._sub, await self._js.pull_subscribe_bind(consumer=config.name, stream=stream)
        if old is not None:
            await _quietly_unsubscribe(old)

    async def close(self) -> None:
        """Unbind the subscription (the durable consumer stays). Call after ``run()`` returned.

        Unsubscribe rather than let the connection drain it: draining waits for the client-side
        queue to be processed, and a pull subscription's queue can hold late status messages
        that nothing will ever read. A real message left there is redelivered after ack_wait.
        """
        sub, self._sub = self._sub, None
        if sub is not None:
            await _quietly_unsubscribe(sub)

    def request_stop(self) -> None:
        """Ask ``run()`` to return once the batch in hand is applied and acked."""
        self._stop.set()

    async def run(self) -> None:
        """Ingest until ``request_stop()``. A stop waits at most one fetch timeout plus a batch."""
        log.info("store.ingest.started", extra=fields(consumer=self._layout.store_consumer))
        while not self._stop.is_set():
            try:
                await self.step()
            except Exception:
                # Loop boundary: NATS reconnecting, the consumer deleted under us... log, pause,
                # bind again and go on. The messages of a failed step are redelivered.
                log.exception("store.ingest.error")
                try:
                    await asyncio.wait_for(self._stop.wait(), self._config.error_backoff_s)
                except TimeoutError:
                    pass
                if not self._stop.is_set():
                    await self._rebind()
        log.info("store.ingest.stopped")

    async def run_until_idle(self) -> int:
        """Burst mode: ingest until a fetch comes back empty. Returns the messages handled."""
        total = 0
        while n := await self.step():
            total += n
        return total

    async def step(self) -> int:
        """Fetch one batch and apply it. Returns how many messages it handled (0: idle)."""
        if self._sub is None:
            raise RuntimeError("Ingest.subscribe() first")
        try:
            msgs = await self._sub.fetch(self._config.batch_size, timeout=self._config.fetch_timeout_s)
        except TimeoutError:
            # nats.errors.TimeoutError (a TimeoutError) or a bare asyncio one: nothing to fetch.
            return 0
        await self._handle(msgs)
        return len(msgs)

    async def _handle(self, msgs: list[Msg]) -> None:
        decoded: list[tuple[Msg, CallEvent]] = []
        for msg in msgs:
            try:
                decoded.append((msg, decode_event(msg.data)))
            except InvalidMessage as err:
                log.warning("store.event.invalid", extra=fields(subject=msg.subject, error=str(err)))
                await msg.term()
        if not decoded:
            return
        started = time.perf_counter()
        try:
            changed = await self._writer.apply([event for _, event in decoded])
        except IntegrityError:
            # A unique key taken by another call (a call number reused after the invoke stream
            # was recreated, or another store inserting the same call): find the culprits.
            log.warning("store.batch.conflict", extra=fields(events=len(decoded)))
            await self._apply_one_by_one(decoded)
            return
        except Exception:
            log.exception("store.batch.failed", extra=fields(events=len(decoded)))
            for msg, _ in decoded:
                await msg.nak(delay=self._config.nak_delay_s)
            return
        for msg, _ in decoded:
            await msg.ack()
        if log.isEnabledFor(logging.DEBUG):
            ms = (time.perf_counter() - started) * 1000
            log.debug("store.batch.applied", extra=fields(events=len(decoded), changed=changed, ms=f"{ms:.1f}"))

    async def _apply_one_by_one(self, decoded: list[tuple[Msg, CallEvent]]) -> None:
        for msg, event in decoded:
            try:
                await self._writer.apply([event])
            except IntegrityError as err:
                log.error(
                    "store.event.conflict",
                    extra=fields(call=event.call_id, number=event.number, kind=event.kind, error=err.orig),
                )
                await msg.term()
            except Exception:
                log.exception("store.event.failed", extra=fields(call=event.call_id, kind=event.kind))
                await msg.nak(delay=self._config.nak_delay_s)
            else:
                await msg.ack()

    async def _rebind(self) -> None:
        try:
            await self.subscribe()
        except Exception:
            log.exception("store.ingest.rebind_failed")


async def _quietly_unsubscribe(sub: JetStreamContext.PullSubscription) -> None:
    try:
        await sub.unsubscribe()
    except Exception:
        log.debug("store.ingest.unsubscribe_failed", exc_info=True)
