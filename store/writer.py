"""Applying a batch of events in one transaction: call records, job records, log chunks.

Per batch, whatever its size: one ``SELECT`` of the records it touches, the merge rules
(:mod:`schemas.fold`, :mod:`store.job_merge`) folding every event of a record in memory
(:mod:`store.batch`), one upsert per table of the rows that changed (whole rows: one
statement, not one per set of changed columns), and one insert of the new log chunks
(once per (id, attempt, seq): a redelivered chunk is skipped). The statements run on the
driver's connection (:mod:`store.sqlite_writer`, :mod:`store.postgres_writer`), so a
batch's cost is a fixed few statements plus its rows (``python -m bench.store_ingest``
measures it; figures in docs/benchmarks.md).

Dead letters (:mod:`store.deadletter`) are written here too, one by one through SQLAlchemy:
they are rare, and must be written whatever the batch path's state.
"""

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from store.batch import Batch
from store.deadletter import DeadLetter
from store.events import StoreEvent
from store.postgres_writer import PostgresWriter
from store.sqlite_writer import SqliteWriter
from store.tables import dead_letters


class _Backend(Protocol):
    async def apply(self, batch: Batch) -> int: ...

    async def close(self) -> None: ...


class EventWriter:
    """The only code that modifies the store's tables. ``await close()`` when done."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._backend: _Backend
        if engine.dialect.name == "sqlite":
            self._backend = SqliteWriter(engine.url, engine.dialect)
        elif engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
            self._backend = PostgresWriter(engine)
        else:
            raise ValueError(f"no event writer for {engine.dialect.name}+{engine.dialect.driver}")

    async def apply(self, events: Sequence[StoreEvent]) -> int:
        """Apply events in order, in one transaction. Returns how many rows changed
        (records inserted or updated, log chunks added).

        Raises what the database raises (``sqlalchemy.exc.IntegrityError`` when a call
        number is already another call's, for instance); nothing is written then.
        """
        if not events:
            return 0
        return await self._backend.apply(Batch.of(events))

    async def dead_letter(self, letter: DeadLetter) -> None:
        """Keep one dead letter; the same stream position again is a no-op (redelivered)."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(dead_letters).values(letter.values()).on_conflict_do_nothing()
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def close(self) -> None:
        await self._backend.close()
