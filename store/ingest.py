"""The ingest loop: events stream -> durable pull consumer -> one transaction per batch -> ack.

Delivery is at least once and the merge rules are idempotent, so the loop acks only after
commit. A message that does not decode is logged and terminated (it would never decode, and
must not block the stream); a batch whose transaction fails is naked for redelivery later.

The pull consumer keeps a pull request open, so the next events are delivered into its
buffer while the current batch is written; a batch is whatever piled up meanwhile (up to
``batch_size``). Batches are applied one at a time and in order.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.exc import IntegrityError

from common.lifecycle import wait_event
from common.logs import fields
from common.pull import ConsumerGone, PullConsumer
from schemas import InvalidMessage, Layout
from store.events import StoreEvent, decode_store_event, event_id

log = logging.getLogger(__name__)


class Writer(Protocol):
    async def apply(self, events: Sequence[StoreEvent]) -> int: ...


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 512
    fetch_timeout_s: float = 1.0
    # A batch not yet full waits this long for more events after its first: fewer, larger
    # transactions under a trickle, at the cost of this much delay before a record is stored.
    linger_s: float = 0.0
    nak_delay_s: float = 2.0
    # Generous: a batch is acked only after its commit, and a slow disk must not stall delivery.
    max_ack_pending: int = 10_000
    ack_wait_s: float = 30.0
    # Pause after an unexpected fetch error (NATS reconnecting, consumer gone) before retrying.
    error_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.fetch_timeout_s <= 0 or self.nak_delay_s < 0 or self.linger_s < 0:
            raise ValueError(f"invalid ingest config {self}")


@dataclass
class IngestStats:
    """Counters of one Ingest, for logs and the benchmark (monotonic clock times)."""

    acked: int = 0
    terminated: int = 0
    naked: int = 0
    batches: int = 0
    first_ack_at: float | None = None
    last_ack_at: float | None = None

    def record_acks(self, n: int) -> None:
        now = time.monotonic()
        if self.first_ack_at is None:
            self.first_ack_at = now
        self.last_ack_at = now
        self.acked += n


class Ingest:
    """Consumes ``<prefix>.events.>`` into the store's tables.

    ``await ingest.subscribe()`` once, then either ``run()`` as a long-lived task (ended by
    ``request_stop()`` after the batches in hand) or ``run_until_idle()`` for a burst.
    """

    def __init__(self, nc: Client, layout: Layout, writer: Writer, config: IngestConfig) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._layout = layout
        self._writer = writer
        self._config = config
        self._pull: PullConsumer | None = None
        self._stop = asyncio.Event()
        self.stats = IngestStats()

    def consumer_config(self) -> ConsumerConfig:
        name = self._layout.store_consumer
        return ConsumerConfig(
            name=name,
            durable_name=name,
            description="store: call and job records, logs",
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
        old, self._pull = (
            self._pull,
            await PullConsumer.bind(self._nc, stream, config.name or "", self._config.fetch_timeout_s),
        )
        if old is not None:
            await old.close()

    async def close(self) -> None:
        """Unbind the subscription (the durable consumer stays). Call after ``run()`` returned.

        Messages delivered but not applied are handed back (redelivered at once).
        """
        pull, self._pull = self._pull, None
        if pull is not None:
            await pull.close()

    def request_stop(self) -> None:
        """Ask ``run()`` to return once the batch in hand is applied and acked."""
        self._stop.set()
        if self._pull is not None:
            self._pull.stop_requesting()

    async def run(self) -> None:
        """Ingest until ``request_stop()``. A stop waits at most one fetch timeout plus a batch."""
        log.info("store.ingest.started", extra=fields(consumer=self._layout.store_consumer))
        while not self._stop.is_set():
            try:
                await self.step()
            except ConsumerGone as err:
                log.warning("store.ingest.consumer_gone", extra=fields(error=str(err)))
                await self._recover()
            except Exception:
                # Loop boundary: NATS reconnecting, the stream recreated... log, pause, bind
                # again and go on. The messages of a failed step are redelivered.
                log.exception("store.ingest.error")
                await self._recover()
        # What the open pull request still delivers is applied and acked too, rather than
        # handed back unacknowledged to wait for another store.
        try:
            if self._pull is not None:
                await self._pull.settle()
            while await self.step():
                pass
        except Exception:
            log.exception("store.ingest.error")
        log.info("store.ingest.stopped", extra=fields(acked=self.stats.acked, batches=self.stats.batches))

    async def run_until_idle(self) -> int:
        """Burst mode: ingest until a fetch comes back empty. Returns the messages handled."""
        total = 0
        while n := await self.step():
            total += n
        return total

    async def step(self) -> int:
        """Take one batch and apply it. Returns how many messages it handled (0: idle)."""
        pull = self._pull
        if pull is None:
            raise RuntimeError("Ingest.subscribe() first")
        c = self._config
        msgs = await pull.fetch(c.batch_size, c.fetch_timeout_s, c.linger_s)
        await self._handle(msgs)
        return len(msgs)

    async def _handle(self, msgs: list[Msg]) -> None:
        if not msgs:
            return
        decoded: list[tuple[Msg, StoreEvent]] = []
        for msg in msgs:
            try:
                decoded.append((msg, decode_store_event(msg.data)))
            except InvalidMessage as err:
                log.warning("store.event.invalid", extra=fields(subject=msg.subject, error=str(err)))
                await msg.term()
                self.stats.terminated += 1
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
            self.stats.naked += len(decoded)
            return
        for msg, _ in decoded:
            await msg.ack()
        self.stats.record_acks(len(decoded))
        self.stats.batches += 1
        if log.isEnabledFor(logging.DEBUG):
            ms = (time.perf_counter() - started) * 1000
            log.debug("store.batch.applied", extra=fields(events=len(decoded), changed=changed, ms=f"{ms:.1f}"))

    async def _apply_one_by_one(self, decoded: list[tuple[Msg, StoreEvent]]) -> None:
        for msg, event in decoded:
            try:
                await self._writer.apply([event])
            except IntegrityError as err:
                log.error(
                    "store.event.conflict",
                    extra=fields(
                        id=event_id(event), number=getattr(event, "number", None), kind=event.kind, error=err.orig
                    ),
                )
                await msg.term()
                self.stats.terminated += 1
            except Exception:
                log.exception("store.event.failed", extra=fields(id=event_id(event), kind=event.kind))
                await msg.nak(delay=self._config.nak_delay_s)
                self.stats.naked += 1
            else:
                await msg.ack()
                self.stats.record_acks(1)

    async def _recover(self) -> None:
        await wait_event(self._stop, self._config.error_backoff_s)
        if not self._stop.is_set():
            await self._rebind()

    async def _rebind(self) -> None:
        try:
            await self.subscribe()
        except Exception:
            log.exception("store.ingest.rebind_failed")
