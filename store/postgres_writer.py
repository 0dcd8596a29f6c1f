"""Applying batches to PostgreSQL: four round trips per batch on asyncpg, nothing more.

``BEGIN``, one ``SELECT ... WHERE id = ANY($1) FOR UPDATE`` per table touched, one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` per table (all rows in one statement),
``COMMIT``. They run on the asyncpg connection under a pooled SQLAlchemy connection (its
codecs, its pool), with statements asyncpg prepares once and caches; SQLAlchemy's own
statement handling cost more CPU than the round trips for small batches.
"""

from typing import Any

import asyncpg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.batch import Batch
from store.sql import Row, TableSQL
from store.tables import call_logs, calls, jobs


class PostgresWriter:
    """Batches into PostgreSQL through the engine's connection pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        dialect = engine.dialect
        self._calls = TableSQL(calls, dialect)
        self._jobs = TableSQL(jobs, dialect)
        self._logs = TableSQL(call_logs, dialect)

    async def apply(self, batch: Batch) -> int:
        async with self._engine.connect() as conn:
            db: Any = (await conn.get_raw_connection()).driver_connection
            try:
                async with db.transaction():
                    return await self._apply(db, batch)
            except asyncpg.IntegrityConstraintViolationError as err:
                # A call number taken by another call: the ingest loop looks for the culprit.
                raise IntegrityError("store batch", None, err) from err
            except BaseException:
                await _drop_if_broken(conn, db)
                raise

    async def close(self) -> None:
        """Nothing of its own: the engine's pool holds the connections."""

    async def _apply(self, db: Any, batch: Batch) -> int:
        changed = 0
        if batch.calls:
            rows = batch.calls_to_write(await self._select(db, self._calls, batch.call_ids()))
            changed += await self._upsert(db, self._calls, rows)
        if batch.jobs:
            rows = batch.jobs_to_write(await self._select(db, self._jobs, batch.job_ids()))
            changed += await self._upsert(db, self._jobs, rows)
        if batch.chunks:
            added = await db.fetch(self._logs.insert_new, *self._logs.columns_of(batch.chunk_rows()))
            changed += len(added)
        return changed

    @staticmethod
    async def _select(db: Any, table: TableSQL, ids: list[str]) -> dict[str, Row]:
        sql = table.select_by_ids(len(ids))
        if not table.has_result_types:
            statement = await db.prepare(sql)
            table.result_types([a.type.oid for a in statement.get_attributes()])
        rows = (table.row(values) for values in await db.fetch(sql, ids))
        return {row["id"]: row for row in rows}

    @staticmethod
    async def _upsert(db: Any, table: TableSQL, rows: list[Row]) -> int:
        if rows:
            await db.execute(table.upsert, *table.columns_of(rows))
        return len(rows)


async def _drop_if_broken(conn: AsyncConnection, db: Any) -> None:
    # SQLAlchemy did not see the error (the statements bypassed it): a connection that is
    # closed must not go back to the pool.
    if db.is_closed():
        await conn.invalidate()
