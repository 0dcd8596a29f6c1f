"""The store service: its composition root and lifecycle.

    async with Store(StoreSettings(...)) as store:
        ...   # ingesting in the background and answering queries

Tests that want determinism pass ``background_ingest=False`` and call
``await store.run_until_idle()`` to ingest everything published so far.
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.engine import make_url

from common.jetstream import connect, drain_or_close, wait_layout
from common.lifecycle import Lifecycle, TaskSet
from common.logs import fields
from common.metrics import Metrics
from common.metrics_http import MetricsServer
from store.db import make_engine, make_sessions
from store.dead_letter_queries import DeadLetterQueries
from store.ingest import Ingest, IngestConfig, IngestStats
from store.job_queries import JobQueries
from store.log_queries import LogQueries
from store.metrics import StoreCollector, ingest_backlog, jobs_by_status
from store.migrate import migrate
from store.queries import CallQueries
from store.retention import Retention
from store.service import Queries, start_service
from store.settings import StoreSettings
from store.stats_queries import StatsQueries
from store.writer import EventWriter

log = logging.getLogger(__name__)


class Store(Lifecycle):
    """Consumes the events stream into SQL (call and job records, logs) and answers queries
    over NATS.

    ``start`` opens the database, connects, provisions the layout, serves queries and starts
    ingesting. ``stop`` (the reverse): the ingest loop finishes and acks the batch in hand,
    up to ``settings.stop_grace_s``, then is cancelled (its batch is redelivered); then the
    subscription, the queries, the NATS connection (drained: the last acks and replies
    flushed) and last the database, once nothing can use it any more.
    """

    def __init__(self, settings: StoreSettings, *, background_ingest: bool = True) -> None:
        super().__init__("store")
        self.settings = settings
        self.layout = settings.layout
        self.background_ingest = background_ingest
        self.tasks = TaskSet(self.name)
        self._ingest: Ingest | None = None
        self.retention: Retention | None = None
        self._retention_stop = asyncio.Event()
        self.metrics = Metrics()  # this store's registry (store/metrics.py)
        self.metrics_server: MetricsServer | None = None

    async def _start(self) -> None:
        s = self.settings
        # 1. Clients. The database first: a bad URL fails before anything is consumed, and the
        #    schema is upgraded (Alembic) before anything reads or writes it.
        engine = make_engine(s.database_url)
        self.on_stop("database", engine.dispose)
        revision = await migrate(engine)
        sessions = make_sessions(engine)
        writer = EventWriter(engine)
        self.on_stop("writer", writer.close)
        nc = await connect(s.nats_url, "faas-store", s.nats_auth)
        self.on_stop("nats", lambda: drain_or_close(nc))
        js = nc.jetstream()
        # The gateway makes the layout; the store's NATS user may only consume events.
        await wait_layout(js, [self.layout.events_stream])
        queries = Queries(
            calls=CallQueries(sessions),
            # A logs reply is cut to what one message of this server may carry.
            logs=LogQueries(sessions, max_bytes=nc.max_payload),
            jobs=JobQueries(sessions),
            dead_letters=DeadLetterQueries(sessions),
            stats=StatsQueries(sessions),
        )
        micro = await start_service(nc, self.layout, queries)
        self.on_stop("queries", micro.stop)
        self._ingest = ingest = Ingest(
            nc,
            self.layout,
            writer,
            IngestConfig(
                batch_size=s.batch_size,
                fetch_timeout_s=s.fetch_timeout_s,
                linger_s=s.linger_s,
                retry_delay_s=s.retry_delay_s,
                max_retry_delay_s=s.max_retry_delay_s,
                ack_wait_s=s.ack_wait_s,
                max_deliver=s.max_deliver,
            ),
        )
        # Delivered but not applied (the loop cancelled): handed back, redelivered at once.
        self.on_stop("unsubscribe", ingest.close)
        await ingest.subscribe()
        # The metrics, read at each scrape (the backlog and the jobs at most every second or so).
        backlog = ingest_backlog(js, self.layout.events_stream, self.layout.store_consumer, self.layout.events_all)
        job_counts = jobs_by_status(sessions)
        self.metrics.before_scrape(backlog.get)
        self.metrics.before_scrape(job_counts.get)
        self.metrics.registry.register(StoreCollector(ingest.stats, backlog, job_counts))
        server = MetricsServer(self.name, self.metrics, s.metrics_host, s.metrics_port, lambda: nc.is_connected)
        self.on_stop("metrics-http", server.stop)
        await server.start()
        self.metrics_server = server

        # 2. The ingest loop after intake stops: the grace period, then cancelled.
        self.on_stop("in-flight", lambda: self.tasks.drain(s.stop_grace_s))

        # 3. Intake: at stop, no new batch is taken; the one in hand is applied and acked.
        #    Retention (when on) deletes old records beside it.
        if s.retention_days > 0:
            self.retention = Retention(
                engine, timedelta(days=s.retention_days), s.retention_interval_s, s.retention_batch
            )
        if self.background_ingest:
            self.tasks.spawn(ingest.run(), name="ingest")
            if self.retention is not None:
                self.tasks.spawn(self.retention.run(self._retention_stop), name="retention")
        self.on_stop("intake", ingest.request_stop)
        self.on_stop("retention", self._retention_stop.set)
        log.info(
            "store.started",
            extra=fields(prefix=self.layout.prefix, database=_safe_url(s.database_url), schema=revision),
        )

    @property
    def ingest_stats(self) -> IngestStats:
        """What the ingest loop has done so far (acks, batches, first and last ack times)."""
        if self._ingest is None:
            raise RuntimeError("start() the Store first")
        return self._ingest.stats

    async def run_until_idle(self) -> int:
        """Burst mode (``background_ingest=False``): ingest until the consumer has nothing
        more to deliver. Returns how many messages were handled."""
        if self._ingest is None or self.stopped:
            raise RuntimeError("start() the Store first")
        if self.background_ingest:
            raise RuntimeError("run_until_idle() needs Store(..., background_ingest=False)")
        return await self._ingest.run_until_idle()


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
