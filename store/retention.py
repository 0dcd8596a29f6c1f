"""Retention: the store's database keeps records for a configured time, not for ever.

Every ``interval`` the store deletes, in transactions of at most ``batch`` rows each:

- call records whose row was last written (``updated_at``, the store's clock) before the
  cutoff, with their log chunks;
- job records whose latest event (``updated_at``) is before the cutoff, with their log chunks;
- log chunks older than the cutoff that belong to no record (of an event set aside, say): a
  chunk's time is the function's, so the chunks of a record go with it, never before;
- dead letters set aside before the cutoff.

One ``store.retention.deleted`` line per round that deleted anything, with the counts. A
round that fails (the database unavailable) is logged and tried again at the next interval.
Several stores on one database may each run it: they delete the same rows, harmlessly.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, and_, delete, exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

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
        done.calls, chunks = await self._records(calls, calls.c.updated_at, cutoff)
        done.log_chunks += chunks
        done.jobs, chunks = await self._records(jobs, jobs.c.updated_at, cutoff)
        done.log_chunks += chunks
        chunk_key = (call_logs.c.id, call_logs.c.attempt, call_logs.c.seq)
        orphan = ~exists().where(calls.c.id == call_logs.c.id) & ~exists().where(jobs.c.id == call_logs.c.id)
        done.log_chunks += await self._older(call_logs, call_logs.c.at, chunk_key, cutoff, orphan)
        done.dead_letters = await self._older(
            dead_letters, dead_letters.c.at, (dead_letters.c.stream, dead_letters.c.sequence), cutoff
        )
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

    async def _records(self, table: Table, when: Column[datetime], cutoff: datetime) -> tuple[int, int]:
        """Delete a table's old records and their log chunks; returns (records, chunks)."""
        records = chunks = 0
        while True:
            async with self.engine.begin() as conn:
                ids = (await conn.execute(select(table.c.id).where(when < cutoff).limit(self.batch))).scalars().all()
                if not ids:
                    return records, chunks
                chunks += (await conn.execute(delete(call_logs).where(call_logs.c.id.in_(ids)))).rowcount
                # Again with the cutoff: a record written meanwhile stays.
                records += (await conn.execute(delete(table).where(table.c.id.in_(ids), when < cutoff))).rowcount
            if len(ids) < self.batch:
                return records, chunks

    async def _older(
        self,
        table: Table,
        when: Column[datetime],
        key: tuple[Column[Any], ...],
        cutoff: datetime,
        also: ColumnElement[bool] | None = None,
    ) -> int:
        """Delete rows older than the cutoff (and matching ``also``), ``batch`` at a time;
        returns how many."""
        deleted = 0
        condition = when < cutoff if also is None else and_(when < cutoff, also)
        while True:
            async with self.engine.begin() as conn:
                rows = (await conn.execute(select(*key).where(condition).limit(self.batch))).all()
                if not rows:
                    return deleted
                chosen = tuple_(*key).in_([tuple(r) for r in rows])
                deleted += (await conn.execute(delete(table).where(chosen, condition))).rowcount
            if len(rows) < self.batch:
                return deleted
