"""Reading call records: one call by id or number, filtered pages (newest first), and a
call's tree (its root and the calls nested under it)."""

from collections.abc import Mapping
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import CallPage, CallQuery, CallRecord, CallStatus, ErrorInfo, GetCall
from schemas.calls import MAX_NUMBER
from schemas.tree import CallTree, GetTree, TreeCall
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

    async def tree(self, request: GetTree) -> CallTree:
        """The tree of a call: its root and every call whose root it is, by number, at most
        ``request.limit`` of them. Raises :class:`NotFound` for an unknown call."""
        async with self._sessions() as session:
            found = (await session.execute(select(calls.c.root).where(calls.c.id == request.id))).first()
            if found is None:
                raise NotFound(f"call {request.id} not found")
            root = found[0] or request.id
            stmt = (
                select(*(calls.c[name] for name in _TREE_COLUMNS))
                .where(or_(calls.c.id == root, calls.c.root == root))
                .order_by(calls.c.number)
                .limit(request.limit + 1)
            )
            rows = (await session.execute(stmt)).mappings().all()
        items = [_tree_call(r) for r in rows[: request.limit]]
        return CallTree(root=root, calls=items, truncated=len(rows) > request.limit)


_TREE_COLUMNS = (
    "id", "number", "parent", "function", "status", "duration_ms", "created_at", "finished_at", "served",
    "error_type", "error_message",
)  # fmt: skip


def _tree_call(row: Mapping[Any, Any]) -> TreeCall:
    error = None
    if row["error_type"] is not None or row["error_message"] is not None:
        error = ErrorInfo(type=row["error_type"] or "Error", message=row["error_message"] or "")
    return TreeCall(
        id=row["id"],
        number=row["number"],
        parent=row["parent"],
        function=row["function"],
        status=CallStatus(row["status"]),
        duration_ms=row["duration_ms"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        served=row["served"],
        error=error,
    )
