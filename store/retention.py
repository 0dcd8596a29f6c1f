"""Retention: the store's database keeps records for a configured time, not for ever.

Every ``interval`` the store deletes, in transactions of at most ``batch`` rows each:

- call records whose row was last written (``updated_at``, the store's clock) before the
  cutoff, with their log chunks;
- job records created before the cutoff, with their log chunks;
- dead letters set aside before the cutoff.

No index is added for this: an index on a column every upsert changes (``updated_at``) costs
the ingest path on every write. Calls are scanned instead in windows of ``batch`` by their
number (the unique index), oldest first, deleting the old ones in each, up to the first
window with none: call numbers increase with time, so past that window the calls are newer.
Jobs go by their creation time, which an index has already.

One ``store.retention.deleted`` line per round that deleted anything, with the counts. A
round that fails (the database unavailable) is logged and tried again at the next interval.
Several stores on one database may each run it: they delete the same rows, harmlessly.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.lifecycle import wait_event
from common.logs import fields
from store.tables import call_logs, calls, dead_letters, jobs

log = logging.getLogger(__name__)


@dataclass
class Deleted:
    calls: int = 0
    jobs: int = 0
    log_chunks: int = 0
    dead_letters: int = 0

    @property
    def total(self) -> int:
        return self.calls + self.jobs + self.log_chunks + self.dead_letters


@dataclass
class Retention:
    """``await retention.run_once()`` for one round (tests), ``run(stop)`` as the store's task."""

    engine: AsyncEngine
    keep: timedelta
    interval_s: float = 3600.0
    batch: int = 1000
    totals: Deleted = field(default_factory=Deleted)

    async def run(self, stop: asyncio.Event) -> None:
        """A round at once, then every ``interval_s`` until ``stop`` is set."""
        log.info("store.retention.started", extra=fields(keep_days=self.keep / timedelta(days=1)))
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                # Loop boundary: the database unavailable... the next round tries again.
                log.exception("store.retention.failed")
            await wait_event(stop, self.interval_s)

    async def run_once(self, now: datetime | None = None) -> Deleted:
        """Delete everything older than ``keep`` before ``now``; returns what went."""
        cutoff = (now or datetime.now(UTC)) - self.keep
        done = Deleted()
        done.calls, chunks = await self._calls(cutoff)
        done.log_chunks += chunks
        done.jobs, chunks = await self._jobs(cutoff)
        done.log_chunks += chunks
        done.dead_letters = await self._dead_letters(cutoff)
        for name in ("calls", "jobs", "log_chunks", "dead_letters"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(done, name))
        if done.total:
            log.info(
                "store.retention.deleted",
                extra=fields(
                    before=cutoff.isoformat(),
                    calls=done.calls,
                    jobs=done.jobs,
                    log_chunks=done.log_chunks,
                    dead_letters=done.dead_letters,
                ),
            )
        return done

    async def _calls(self, cutoff: datetime) -> tuple[int, int]:
        records = chunks = 0
        after: int | None = None
        while True:
            window = select(calls.c.id, calls.c.number, calls.c.updated_at).order_by(calls.c.number)
            if after is not None:
                window = window.where(calls.c.number > after)
            async with self.engine.begin() as conn:
                rows = (await conn.execute(window.limit(self.batch))).all()
                old = [r.id for r in rows if r.updated_at < cutoff]
                if old:
                    chunks += await _delete_with_logs(conn, calls, old, calls.c.updated_at < cutoff)
                    records += len(old)
            if not old or len(rows) < self.batch:
                return records, chunks
            after = rows[-1].number

    async def _jobs(self, cutoff: datetime) -> tuple[int, int]:
        records = chunks = 0
        while True:
            async with self.engine.begin() as conn:
                stmt = select(jobs.c.id).where(jobs.c.created_at < cutoff).limit(self.batch)
                ids = list((await conn.execute(stmt)).scalars())
                if ids:
                    chunks += await _delete_with_logs(conn, jobs, ids, jobs.c.created_at < cutoff)
                    records += len(ids)
            if len(ids) < self.batch:
                return records, chunks

    async def _dead_letters(self, cutoff: datetime) -> int:
        deleted = 0
        t = dead_letters
        while True:
            async with self.engine.begin() as conn:
                keys = (
                    await conn.execute(select(t.c.stream, t.c.sequence).where(t.c.at < cutoff).limit(self.batch))
                ).all()
                if keys:
                    chosen = tuple_(t.c.stream, t.c.sequence).in_([tuple(k) for k in keys])
                    deleted += (await conn.execute(delete(t).where(chosen, t.c.at < cutoff))).rowcount
            if len(keys) < self.batch:
                return deleted


async def _delete_with_logs(conn: AsyncConnection, table: Table, ids: list[str], still_old: ColumnElement[bool]) -> int:
    """Delete these records (if still old: one written meanwhile stays) and their log chunks;
    returns how many chunks went."""
    chunks = (await conn.execute(delete(call_logs).where(call_logs.c.id.in_(ids)))).rowcount
    await conn.execute(delete(table).where(table.c.id.in_(ids), still_old))
    return int(chunks)
