"""The ingest loop: events stream -> durable pull consumer -> one transaction per batch -> ack.

Delivery is at least once and the merge rules are idempotent, so the loop acks only after
commit. The pull consumer keeps a pull request open, so the next events are delivered into
its buffer while the current batch is written; a batch is whatever piled up meanwhile (up to
``batch_size``). Batches are applied one at a time and in order.

No event can hold up the others (:mod:`store.deadletter`):

- a message that does not decode is set aside as a dead letter and terminated;
- a batch the database refuses is applied again event by event: the events it takes are
  acked, each one it refuses is set aside as a dead letter and terminated;
- while the database is *unavailable* (down, locked, full) the same events are retried in
  the process with a growing delay (kept alive with ``in_progress``, so JetStream does not
  count a delivery for it), and nothing is set aside;
- the consumer has ``max_deliver``: what burns deliveries is a store that stops or dies with
  events in hand. An event on its last delivery is applied alone (one transaction of its
  own, before the rest of its batch) and set aside if refused; past that, JetStream delivers
  it no more (it stays in the events stream until the stream's limits remove it).

Events deleted by the stream's limits before the store took them are reported
(:mod:`store.events_lost`).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from common.lifecycle import wait_event
from common.logs import fields
from common.pull import ConsumerGone, PullConsumer
from common.workitem import Delivery, keepalive_interval
from schemas import InvalidMessage, Layout
from store.deadletter import DeadLetter, describe, unavailable
from store.events import StoreEvent, decode_store_event, event_id
from store.events_lost import LossWatch

log = logging.getLogger(__name__)


class Writer(Protocol):
    async def apply(self, events: Sequence[StoreEvent]) -> int: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 512
    fetch_timeout_s: float = 1.0
    # A batch not yet full waits this long for more events after its first: fewer, larger
    # transactions under a trickle, at the cost of this much delay before a record is stored.
    linger_s: float = 0.0
    # While the database is unavailable, the batch in hand is retried after this delay,
    # doubling up to max_retry_delay_s (and at most a third of ack_wait, the keepalive beat).
    retry_delay_s: float = 0.5
    max_retry_delay_s: float = 10.0
    # Generous: a batch is acked only after its commit, and a slow disk must not stall delivery.
    max_ack_pending: int = 10_000
    ack_wait_s: float = 30.0
    # Deliveries of one event before JetStream gives up on it (see the module docstring).
    max_deliver: int = 10
    # Pause after an unexpected fetch error (NATS reconnecting, consumer gone) before retrying.
    error_backoff_s: float = 1.0

    def __post_init__(self) -> None:
        if (
            self.batch_size < 1
            or self.fetch_timeout_s <= 0
            or self.retry_delay_s <= 0
            or self.max_retry_delay_s < self.retry_delay_s
            or self.linger_s < 0
            or self.max_deliver < 2
        ):
            raise ValueError(f"invalid ingest config {self}")


@dataclass
class IngestStats:
    """Counters of one Ingest, for logs and the benchmark (monotonic clock times)."""

    acked: int = 0
    dead_letters: int = 0
    # Retries of a batch while the database was unavailable.
    retries: int = 0
    batches: int = 0
    first_ack_at: float | None = None
    last_ack_at: float | None = None

    def record_acks(self, n: int) -> None:
        now = time.monotonic()
        if self.first_ack_at is None:
            self.first_ack_at = now
        self.last_ack_at = now
        self.acked += n


class _Stopping(Exception):
    """Stop requested while the database was unavailable: the events in hand go back."""


@dataclass
class _Item:
    delivery: Delivery
    # None: the message does not decode.
    event: StoreEvent | None
    # Acked or terminated.
    settled: bool = False


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
        self.losses = LossWatch(self._js, layout.events_stream, layout.store_consumer)

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
            max_deliver=self._config.max_deliver,
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
        await self.losses.start()

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
        items = [_Item(Delivery(msg), None) for msg in msgs]
        await self.losses.saw(i.delivery.sequence for i in items if i.delivery.attempt == 1)
        try:
            for item in items:
                try:
                    item.event = decode_store_event(item.delivery.msg.data)
                except InvalidMessage as err:
                    await self._set_aside(item, f"InvalidMessage: {err}")
            # Last deliveries first, each alone: whatever happens to the rest of the batch
            # (a store that dies on it), these do not wait for another delivery.
            for item in items:
                if not item.settled and item.delivery.attempt >= self._config.max_deliver:
                    await self._apply([item])
            rest = [i for i in items if not i.settled]
            if rest:
                await self._apply(rest)
        except _Stopping:
            # Not applied (the database unavailable until the stop): redelivered at once,
            # to another store or to this one when it is back.
            for item in items:
                if not item.settled:
                    await item.delivery.msg.nak()

    async def _apply(self, items: list[_Item]) -> None:
        """Apply ``items`` in one transaction; if refused, each alone, setting aside what is."""
        started = time.perf_counter()
        events = [i.event for i in items if i.event is not None]
        error = await self._until_available(lambda: self._writer.apply(events), items)
        if error is None:
            for item in items:
                await item.delivery.msg.ack()
                item.settled = True
            self.stats.record_acks(len(items))
            self.stats.batches += 1
            if log.isEnabledFor(logging.DEBUG):
                ms = (time.perf_counter() - started) * 1000
                log.debug("store.batch.applied", extra=fields(events=len(items), ms=f"{ms:.1f}"))
            return
        if len(items) == 1:
            await self._set_aside(items[0], describe(error))
            return
        log.warning("store.batch.refused", extra=fields(events=len(items), error=describe(error)))
        for item in items:
            await self._apply([item])

    async def _until_available(self, op: Callable[[], Awaitable[object]], items: list[_Item]) -> BaseException | None:
        """Run ``op`` until it succeeds (None) or the database refuses it (the error), waiting
        while the database is unavailable. Raises :class:`_Stopping` if stopped meanwhile."""
        c = self._config
        delay = c.retry_delay_s
        while True:
            try:
                await op()
                return None
            except Exception as err:
                if not unavailable(err):
                    return err
                if self._stop.is_set():
                    raise _Stopping from err
                log.warning(
                    "store.database.unavailable",
                    extra=fields(events=len(items), error=describe(err), retry_in_s=f"{delay:.2f}"),
                )
            self.stats.retries += 1
            # Not a delivery more: the events in hand stay this store's while it waits.
            for item in items:
                await item.delivery.msg.in_progress()
            if await wait_event(self._stop, min(delay, keepalive_interval(c.ack_wait_s))):
                raise _Stopping
            delay = min(delay * 2, c.max_retry_delay_s)

    async def _set_aside(self, item: _Item, error: str) -> None:
        """Keep the message as a dead letter, then terminate it (never delivered again)."""
        d = item.delivery
        letter = DeadLetter.of(self._layout.events_stream, d.sequence, d.msg.subject, d.attempt, error, d.msg.data)
        refused = await self._until_available(lambda: self._writer.dead_letter(letter), [item])
        item.settled = True
        if refused is not None:
            # Not even its bytes could be kept: it is left to JetStream (max_deliver).
            log.error("store.dead_letter.failed", extra=fields(sequence=d.sequence, error=describe(refused)))
            await d.msg.nak(delay=self._config.max_retry_delay_s)
            return
        log.error(
            "store.dead_letter",
            extra=fields(
                subject=d.msg.subject,
                sequence=d.sequence,
                deliveries=d.attempt,
                id=event_id(item.event) if item.event is not None else None,
                kind=item.event.kind if item.event is not None else None,
                error=letter.error,
            ),
        )
        await d.msg.term()
        self.stats.dead_letters += 1

    async def _recover(self) -> None:
        await wait_event(self._stop, self._config.error_backoff_s)
        if not self._stop.is_set():
            await self._rebind()

    async def _rebind(self) -> None:
        try:
            await self.subscribe()
        except Exception:
            log.exception("store.ingest.rebind_failed")
