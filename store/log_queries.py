"""Reading the stored output of a call or a job, within one NATS message.

A page holds the lines of the latest attempt in chunk order (``seq``); ``truncated`` is set
if any of its chunks was cut at the function's log limit by the publisher, or if the store
cut the page itself: a reply never exceeds ``max_bytes`` (the server's max payload, 1 MiB by
default), so an output larger than that comes back as its first part, the last line cut
mid-text if needed, with ``truncated`` set. The whole output stays in the database.
"""

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import GetLogs, LogEntry, LogPage, encode
from store.errors import NotFound
from store.log_lines import decode_lines
from store.tables import call_logs, calls, jobs

# The smallest part of a line worth cutting the page to (less is left out).
_MIN_CUT_BYTES = 64


class LogQueries:
    """Read-only queries on the log chunks."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_bytes: int) -> None:
        self._sessions = sessions
        self._max_bytes = max_bytes

    async def get(self, request: GetLogs) -> LogPage:
        """The latest attempt's lines; raises :class:`NotFound` for an unknown id."""
        async with self._sessions() as session:
            attempt = await session.scalar(select(func.max(call_logs.c.attempt)).where(call_logs.c.id == request.id))
            if attempt is None:
                if not await _known(session, request.id):
                    raise NotFound(f"no call or job {request.id}")
                return LogPage(id=request.id, lines=[])
            return await self._page(session, request.id, attempt)

    async def _page(self, session: AsyncSession, key: str, attempt: int) -> LogPage:
        where = (call_logs.c.id == key) & (call_logs.c.attempt == attempt)
        sizes = (
            await session.execute(
                select(call_logs.c.seq, call_logs.c.nbytes, call_logs.c.truncated).where(where).order_by("seq")
            )
        ).all()
        truncated = any(row.truncated for row in sizes)
        room = self._max_bytes - len(encode(LogPage(id=key, lines=[], truncated=True)))
        # Whole chunks while they fit, and the first one that does not (to be cut).
        last_seq, used, cut = sizes[-1].seq, 0, False
        for row in sizes:
            if used + row.nbytes > room:
                last_seq, cut = row.seq, True
                break
            used += row.nbytes
        rows = await session.execute(
            select(call_logs.c.lines).where(where, call_logs.c.seq <= last_seq).order_by("seq")
        )
        lines = [line for row in rows for line in decode_lines(row.lines)]
        if cut:
            lines = _first_part(lines, room)
        return LogPage(id=key, lines=lines, truncated=truncated or cut)


def _first_part(lines: list[LogEntry], room: int) -> list[LogEntry]:
    """The lines that fit in ``room`` bytes of a page, the last one cut mid-text if worth it."""
    kept: list[LogEntry] = []
    used = 0
    for line in lines:
        size = _size(line) + 1  # and its separator
        if used + size > room:
            part = _cut(line, room - used - 1)
            if part is not None:
                kept.append(part)
            break
        kept.append(line)
        used += size
    return kept


def _cut(line: LogEntry, room: int) -> LogEntry | None:
    """The longest prefix of the line's text that encodes within ``room`` bytes."""
    empty = line.model_copy(update={"text": ""})
    if room - _size(empty) < _MIN_CUT_BYTES:
        return None
    low, high = 0, len(line.text)  # invariant: a prefix of ``low`` characters fits
    while low < high:
        mid = (low + high + 1) // 2
        if _size(line.model_copy(update={"text": line.text[:mid]})) <= room:
            low = mid
        else:
            high = mid - 1
    return line.model_copy(update={"text": line.text[:low]})


def _size(line: LogEntry) -> int:
    return len(encode(line))  # bytes, not characters


async def _known(session: AsyncSession, key: str) -> bool:
    for table in (calls, jobs):
        if await session.scalar(select(table.c.id).where(table.c.id == key)) is not None:
            return True
    return False
