"""The store's Prometheus metrics (served on ``FAAS_STORE_METRICS_HOST:_PORT``).

Everything is read at scrape time: the ingest loop's own counters (``IngestStats``), its
backlog in the events stream, and the job records by status. The backlog and the jobs need
a round trip (JetStream, the database): each is a :class:`~common.metrics.Cached` fetch
(at most one every ``ttl_s``, bounded by a timeout), so a scrape storm costs NATS and the
database nothing more.

Ingest lag is measured on the store's durable consumer of the events stream:
``num_pending`` (stored in the stream, not yet delivered to the store), ``num_ack_pending``
(delivered, not yet committed and acked), and the age of the oldest event not yet stored:
the first message after the consumer's ack floor, as the stream stamped it.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.metrics import Cached
from schemas import JobStatus
from store.ingest import IngestStats
from store.tables import jobs

# The JetStream or database round trip one scrape waits for at most (then: the last figures).
FETCH_TIMEOUT_S = 1.0
BACKLOG_TTL_S = 1.5
JOBS_TTL_S = 5.0


@dataclass(frozen=True)
class Backlog:
    pending: int  # in the stream, not delivered to the store yet
    unacked: int  # delivered, not committed yet
    oldest_age_s: float  # of the oldest of them (0: none)


def ingest_backlog(js: JetStreamContext, stream: str, consumer: str, subject: str) -> Cached[Backlog]:
    """The store consumer's backlog, fetched at most every ``BACKLOG_TTL_S``."""

    async def fetch() -> Backlog:
        info = await js.consumer_info(stream, consumer, timeout=FETCH_TIMEOUT_S)
        pending, unacked = info.num_pending or 0, info.num_ack_pending or 0
        if pending + unacked == 0:
            return Backlog(0, 0, 0.0)
        floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
        # The first event after the floor is one the store has not committed (those above
        # it may be: acks need not come in order, and the floor is their contiguous end).
        oldest = await js.get_msg(stream, seq=floor + 1, subject=subject, next=True)
        age = (datetime.now(UTC) - oldest.time).total_seconds() if oldest.time is not None else 0.0
        return Backlog(pending, unacked, max(age, 0.0))

    return Cached("store-backlog", fetch, ttl_s=BACKLOG_TTL_S, timeout_s=FETCH_TIMEOUT_S * 2)


def jobs_by_status(sessions: async_sessionmaker[AsyncSession]) -> Cached[dict[str, int]]:
    """Job records by status (an index scan: ``ix_jobs_status_created_id``), every ``JOBS_TTL_S``."""

    async def fetch() -> dict[str, int]:
        async with sessions() as session:
            rows = await session.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
            return {str(status): int(n) for status, n in rows}

    return Cached("store-jobs", fetch, ttl_s=JOBS_TTL_S, timeout_s=FETCH_TIMEOUT_S)


class StoreCollector(Collector):
    def __init__(self, stats: IngestStats, backlog: Cached[Backlog], jobs: Cached[dict[str, int]]) -> None:
        self._stats = stats
        self._backlog = backlog
        self._jobs = jobs

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: read at collect time

    def collect(self) -> Iterator[Metric]:
        st = self._stats
        yield CounterMetricFamily("faas_store_events", "Events stored (committed and acked)", value=st.acked)
        yield CounterMetricFamily("faas_store_batches", "Transactions of events committed", value=st.batches)
        yield CounterMetricFamily(
            "faas_store_dead_letters", "Events the database refused, set aside as dead letters", value=st.dead_letters
        )
        yield CounterMetricFamily(
            "faas_store_database_retries", "Retries of a batch while the database was unavailable", value=st.retries
        )
        backlog = self._backlog.value
        if backlog is not None:
            yield GaugeMetricFamily(
                "faas_store_ingest_pending",
                "Events in the events stream not yet delivered to the store (its consumer's num_pending)",
                value=backlog.pending,
            )
            yield GaugeMetricFamily(
                "faas_store_ingest_unacked",
                "Events delivered to the store and not yet committed (num_ack_pending)",
                value=backlog.unacked,
            )
            yield GaugeMetricFamily(
                "faas_store_ingest_lag_seconds",
                "Age of the oldest event not yet stored (0: none waiting)",
                value=backlog.oldest_age_s,
            )
        counts = self._jobs.value
        if counts is not None:
            by_status = GaugeMetricFamily("faas_jobs", "Job records by status", labels=["status"])
            for status in JobStatus:
                by_status.add_metric([status.value], counts.get(status.value, 0))
            yield by_status
