"""Reading call records: one call by id or number, and filtered pages, newest first."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import CallPage, CallQuery, CallRecord, GetCall
from schemas.calls import MAX_NUMBER
from store import cursor
from store.errors import NotFound
from store.rows import row_to_record
from store.tables import calls

_CURSOR_TAG = "n"


def encode_cursor(number: int) -> str:
    """An opaque cursor: the next page holds calls numbered below ``number``."""
    return cursor.pack(_CURSOR_TAG, str(number))


def decode_cursor(value: str) -> int:
    raw = cursor.unpack(_CURSOR_TAG, value)
    try:
        number = int(raw)
    except ValueError:
        raise cursor.invalid(value) from None
    if not 0 <= number <= MAX_NUMBER:  # past a 64-bit integer: no call of ours, nor SQL's
        raise cursor.invalid(value)
    return number


class CallQueries:
    """Read-only queries on the calls table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, request: GetCall) -> CallRecord:
        """The call with the request's id or number; raises :class:`NotFound`."""
        if request.id is not None:
            where = calls.c.id == request.id
            key: object = request.id
        else:
            where = calls.c.number == request.number
            key = request.number
        async with self._sessions() as session:
            row = (await session.execute(select(calls).where(where))).mappings().first()
        if row is None:
            raise NotFound(f"call {key} not found")
        return row_to_record(row)

    async def list(self, query: CallQuery) -> CallPage:
        """A page of calls, newest (highest number) first.

        ``since`` is inclusive and ``until`` exclusive, both on ``created_at``.
        ``next_cursor`` is None on the last page.
        """
        stmt = select(calls).order_by(calls.c.number.desc()).limit(query.limit + 1)
        if query.function is not None:
            stmt = stmt.where(calls.c.function == query.function)
        if query.status is not None:
            stmt = stmt.where(calls.c.status == query.status.value)
        if query.since is not None:
            stmt = stmt.where(calls.c.created_at >= query.since)
        if query.until is not None:
            stmt = stmt.where(calls.c.created_at < query.until)
        if query.cursor is not None:
            stmt = stmt.where(calls.c.number < decode_cursor(query.cursor))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).mappings().all()
        items = [row_to_record(r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return CallPage(items=items, next_cursor=encode_cursor(items[-1].number) if more else None)
