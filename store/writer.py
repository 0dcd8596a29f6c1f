"""Applying a batch of events to the calls table in one transaction.

One ``SELECT ... WHERE id IN (...)`` loads every record the batch touches, :mod:`store.merge`
folds the events in memory, and one executemany INSERT plus one executemany UPDATE write back
only the records that changed. That is what lets SQLite absorb thousands of events a second.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import CallEvent, CallRecord
from store.db import CallRow, calls, record_to_values, row_to_record
from store.merge import merge_all

# Bound parameters per IN (...): well below SQLite's limit of 32766 (999 before 3.32).
_IN_CHUNK = 500


class CallWriter:
    """Writes events into call records; the only code that modifies the calls table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply(self, events: Sequence[CallEvent]) -> int:
        """Apply events in order, in one transaction. Returns how many records changed.

        Raises what the database raises (``sqlalchemy.exc.IntegrityError`` when a call
        number is already another call's, for instance); nothing is written then.
        """
        if not events:
            return 0
        ids = list(dict.fromkeys(e.call_id for e in events))
        async with self._sessions.begin() as session:
            stored = await _load(session, ids)
            records = {i: row_to_record(m) for i, m in stored.items()}
            merge_all(records, events)
            inserts, updates = _changes(stored, records)
            # ORM bulk statements: executemany, no per-object unit-of-work bookkeeping.
            if inserts:
                await session.execute(insert(CallRow), inserts)
            if updates:
                await session.execute(update(CallRow), updates)
        return len(inserts) + len(updates)


async def _load(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        # FOR UPDATE matters where several stores share a PostgreSQL; SQLite ignores it.
        stmt = select(calls).where(calls.c.id.in_(chunk)).with_for_update()
        for row in (await session.execute(stmt)).mappings():
            stored[row["id"]] = dict(row)
    return stored


def _changes(
    stored: dict[str, dict[str, Any]], records: dict[str, CallRecord]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = datetime.now(UTC)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for call_id, record in records.items():
        values = record_to_values(record)
        before = stored.get(call_id)
        if before is None:
            inserts.append({**values, "updated_at": now})
        elif any(before[k] != v for k, v in values.items()):
            updates.append({**values, "updated_at": now})
    return inserts, updates
