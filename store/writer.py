"""Applying a batch of events in one transaction: call records, job records, log chunks.

Records: one ``SELECT ... WHERE id IN (...)`` loads every record the batch touches, the merge
rules (:mod:`store.merge`, :mod:`store.job_merge`) fold the events in memory, and executemany
statements write back only the rows and columns that changed (:mod:`store.upsert`). Log chunks
go in with one INSERT, once per (id, attempt, seq): a redelivered chunk is skipped. That is
what lets SQLite absorb well over ten thousand events a second (``python -m bench.store_ingest``).
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert

from schemas import JobAccepted, JobFinished, JobStarted, Logs
from store import upsert
from store.events import StoreEvent
from store.job_merge import JobState, merge_jobs
from store.log_lines import encode_lines
from store.merge import RecordEvent, merge_all
from store.rows import job_to_values, record_to_values, row_to_job, row_to_record
from store.tables import call_logs, calls, jobs

# schemas.JobEvent is an annotated union: isinstance needs the plain one.
JobEvent = JobAccepted | JobStarted | JobFinished


class EventWriter:
    """The only code that modifies the store's tables."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply(self, events: Sequence[StoreEvent]) -> int:
        """Apply events in order, in one transaction. Returns how many rows changed
        (records inserted or updated, log chunks added).

        Raises what the database raises (``sqlalchemy.exc.IntegrityError`` when a call
        number is already another call's, for instance); nothing is written then.
        """
        records: list[RecordEvent] = []
        chunks: list[Logs] = []
        job_events: list[JobEvent] = []
        for event in events:
            if isinstance(event, Logs):
                chunks.append(event)
            elif isinstance(event, JobAccepted | JobStarted | JobFinished):
                job_events.append(event)
            else:
                records.append(event)
        if not events:
            return 0
        async with self._sessions.begin() as session:
            changed = await _apply_calls(session, records) if records else 0
            changed += await _apply_jobs(session, job_events) if job_events else 0
            changed += await _add_chunks(session, chunks) if chunks else 0
        return changed


async def _apply_calls(session: AsyncSession, events: list[RecordEvent]) -> int:
    ids = list(dict.fromkeys(e.call_id for e in events))
    stored = await upsert.load(session, calls, ids)
    records = {i: row_to_record(m) for i, m in stored.items()}
    merge_all(records, events)
    inserts, updates = upsert.changes(
        stored, (record_to_values(r) for r in records.values()), {"updated_at": datetime.now(UTC)}
    )
    return await upsert.write(session, calls, inserts, updates)


async def _apply_jobs(session: AsyncSession, events: list[JobEvent]) -> int:
    ids = list(dict.fromkeys(e.job_id for e in events))
    stored = await upsert.load(session, jobs, ids)
    states: dict[str, JobState] = {i: row_to_job(m) for i, m in stored.items()}
    merge_jobs(states, events)
    inserts, updates = upsert.changes(stored, (job_to_values(s) for s in states.values()))
    return await upsert.write(session, jobs, inserts, updates)


async def _add_chunks(session: AsyncSession, events: list[Logs]) -> int:
    # Within the batch the first copy of a chunk counts; against the table, ON CONFLICT DO
    # NOTHING skips a redelivered one (or one another store sharing the database just added),
    # and RETURNING tells how many were really new.
    fresh = {(e.call_id, e.attempt, e.seq): e for e in reversed(events)}
    stmt = _insert_ignoring_duplicates(session, call_logs).returning(call_logs.c.seq)
    added = await session.execute(stmt, [_chunk_row(e) for e in fresh.values()])
    return len(added.all())


def _chunk_row(event: Logs) -> dict[str, Any]:
    lines = encode_lines(event.lines)
    return {
        "id": event.call_id,
        "attempt": event.attempt,
        "seq": event.seq,
        "at": event.at,
        "lines": lines.decode(),
        # "[a,b]" -> each line plus one separator: len - 2 + 1.
        "nbytes": len(lines) - 1 if event.lines else 0,
        "truncated": event.truncated,
    }


def _insert_ignoring_duplicates(session: AsyncSession, table: Table) -> Insert:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
