"""Loading the rows a batch touches and writing back only what changed.

Shared by calls and jobs: one ``SELECT ... WHERE id IN (...) FOR UPDATE`` per 500 ids, then
one executemany INSERT, and one executemany UPDATE per set of changed columns (a "started"
sets a few columns, a "finished" others: params and results are not sent again each time).
Core statements, no ORM unit of work.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, String, Table, any_, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

# Bound parameters per IN (...): well below SQLite's limit of 32766 (999 before 3.32).
IN_CHUNK = 500

Row = dict[str, Any]


async def load(session: AsyncSession, table: Table, ids: list[str]) -> dict[str, Row]:
    """The stored rows of these ids, keyed by id (missing ids are absent)."""
    stored: dict[str, Row] = {}
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        # FOR UPDATE matters where several stores share a PostgreSQL; SQLite ignores it.
        stmt = select(table).where(_id_in(session, table, chunk)).with_for_update()
        for row in (await session.execute(stmt)).mappings():
            stored[row["id"]] = dict(row)
    return stored


def changes(
    stored: Mapping[str, Row], rows: Iterable[Row], extra: Mapping[str, Any] | None = None
) -> tuple[list[Row], list[Row]]:
    """The rows to insert (all their columns) and to update (the id and the changed columns).

    ``extra`` (the writer's bookkeeping, e.g. ``updated_at``) is added to written rows but
    not compared.
    """
    extra = extra or {}
    inserts: list[Row] = []
    updates: list[Row] = []
    for values in rows:
        before = stored.get(values["id"])
        if before is None:
            inserts.append({**values, **extra})
            continue
        changed = {k: v for k, v in values.items() if before[k] != v}
        if changed:
            updates.append({"id": values["id"], **changed, **extra})
    return inserts, updates


async def write(session: AsyncSession, table: Table, inserts: list[Row], updates: list[Row]) -> int:
    """Insert, and update by primary key ``id``; returns how many rows were written."""
    if inserts:
        await session.execute(insert(table), inserts)
    # One executemany per set of columns: every key but the bound id becomes a SET column.
    groups: dict[frozenset[str], list[Row]] = {}
    for row in updates:
        params = {"b_id": row["id"], **{k: v for k, v in row.items() if k != "id"}}
        groups.setdefault(frozenset(params), []).append(params)
    for group in groups.values():
        await session.execute(update(table).where(table.c.id == bindparam("b_id")), group)
    return len(inserts) + len(updates)


def _id_in(session: AsyncSession, table: Table, ids: list[str]) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter: the same statement whatever the count, so prepared only once.
        return table.c.id == any_(bindparam("ids", ids, type_=ARRAY(String)))
    return table.c.id.in_(ids)
