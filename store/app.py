"""The store service: its composition root and lifecycle.

    async with Store(StoreSettings(...)) as store:
        ...   # ingesting in the background and answering queries

Tests that want determinism pass ``background_ingest=False`` and call
``await store.run_until_idle()`` to ingest everything published so far.
"""

import asyncio
import logging
from collections.abc import Awaitable
from types import TracebackType

from nats.aio.client import Client
from nats.micro.service import Service as MicroService
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from common.jetstream import connect, ensure_layout
from common.lifecycle import TaskSet
from common.logs import fields
from store.db import make_engine, make_sessions
from store.ingest import Ingest, IngestConfig, IngestStats
from store.job_queries import JobQueries
from store.log_queries import LogQueries
from store.migrate import migrate
from store.queries import CallQueries
from store.service import Queries, start_service
from store.settings import StoreSettings
from store.writer import EventWriter

log = logging.getLogger(__name__)


class Store:
    """Consumes the events stream into SQL (call and job records, logs) and answers queries
    over NATS."""

    name = "store"

    def __init__(self, settings: StoreSettings, *, background_ingest: bool = True) -> None:
        self.settings = settings
        self.layout = settings.layout
        self.background_ingest = background_ingest
        self.tasks = TaskSet(self.name)
        self._engine: AsyncEngine | None = None
        self._nc: Client | None = None
        self._micro: MicroService | None = None
        self._ingest: Ingest | None = None
        self._writer: EventWriter | None = None
        self._started = False
        self._stopped = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Open the database, connect, provision the layout, serve queries, start ingesting.

        Idempotent; a stopped Store does not start again (make a new one).
        """
        async with self._lock:
            if self._stopped:
                raise RuntimeError("a stopped Store cannot start again: make a new one")
            if self._started:
                return
            self._started = True
            try:
                await self._start()
            except BaseException:
                await self._stop()
                raise

    async def _start(self) -> None:
        s = self.settings
        # The database first: a bad URL fails before anything is consumed, and the schema is
        # upgraded (Alembic) before anything reads or writes it.
        self._engine = make_engine(s.database_url)
        revision = await migrate(self._engine)
        sessions = make_sessions(self._engine)

        self._nc = await connect(s.nats_url, name="faas-store")
        js = self._nc.jetstream()
        await ensure_layout(js, self.layout)

        self._writer = EventWriter(self._engine)
        self._ingest = Ingest(
            self._nc,
            self.layout,
            self._writer,
            IngestConfig(
                batch_size=s.batch_size,
                fetch_timeout_s=s.fetch_timeout_s,
                linger_s=s.linger_s,
                nak_delay_s=s.nak_delay_s,
                ack_wait_s=s.ack_wait_s,
            ),
        )
        await self._ingest.subscribe()
        queries = Queries(
            calls=CallQueries(sessions),
            # A logs reply is cut to what one message of this server may carry.
            logs=LogQueries(sessions, max_bytes=self._nc.max_payload),
            jobs=JobQueries(sessions),
        )
        self._micro = await start_service(self._nc, self.layout, queries)
        if self.background_ingest:
            self.tasks.spawn(self._ingest.run(), name="ingest")
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
        if self._ingest is None or self._stopped:
            raise RuntimeError("start() the Store first")
        if self.background_ingest:
            raise RuntimeError("run_until_idle() needs Store(..., background_ingest=False)")
        return await self._ingest.run_until_idle()

    async def stop(self) -> None:
        """Finish and ack the batch in hand, stop serving, drain NATS, close the database.

        Idempotent. Waits up to ``settings.stop_grace_s`` for the ingest loop, then cancels it.
        """
        async with self._lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            await self._stop()

    async def _stop(self) -> None:
        self._stopped = True
        # 1. Stop taking new batches; the one in hand is applied and acked.
        if self._ingest is not None:
            self._ingest.request_stop()
        if not await self.tasks.wait_all(timeout=self.settings.stop_grace_s):
            log.warning("store.stop.cancelling", extra=fields(tasks=len(self.tasks)))
        # 2. Whatever did not finish in the grace period is cancelled (its batch is redelivered).
        await self.tasks.cancel_all()
        if self._ingest is not None:
            await _log_errors(self._ingest.close(), "store.stop.unsubscribe")
        # 3. Stop answering queries, then drain: flushes the last acks and replies.
        if self._micro is not None:
            await _log_errors(self._micro.stop(), "store.stop.micro")
            self._micro = None
        if self._nc is not None:
            await _drain_or_close(self._nc)
            self._nc = None
        # 4. Only now close the database: nothing can use it any more.
        if self._writer is not None:
            await _log_errors(self._writer.close(), "store.stop.writer")
            self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        log.info("store.stopped")

    async def __aenter__(self) -> "Store":
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _log_errors(step: Awaitable[None], event: str) -> None:
    # Shutdown goes on past a failing step: the later steps still release their resources.
    try:
        await step
    except Exception:
        log.exception(event)


async def _drain_or_close(nc: Client) -> None:
    try:
        await nc.drain()
    except Exception as err:
        # NATS is down (reconnecting) or already closed: nothing left to flush, but the client
        # must not go on reconnecting for ever behind a stopped service.
        log.warning("store.stop.drain_failed", extra=fields(error=repr(err)))
        await _log_errors(nc.close(), "store.stop.close")


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
