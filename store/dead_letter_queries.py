"""Reading dead letters: pages newest first (by stream sequence), payloads cut to a preview."""

import base64
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from schemas.dead_letters import PAYLOAD_PREVIEW_BYTES
from store import cursor
from store.tables import dead_letters

_CURSOR_TAG = "d"


class DeadLetterQueries:
    """Read-only queries on the dead_letters table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list(self, query: DeadLetterQuery) -> DeadLetterPage:
        """A page of dead letters, newest first; ``next_cursor`` is None on the last page."""
        t = dead_letters
        stmt = select(t).order_by(t.c.sequence.desc(), t.c.stream.desc()).limit(query.limit + 1)
        if query.cursor is not None:
            raw = cursor.unpack(_CURSOR_TAG, query.cursor)
            if not raw.isdigit():
                raise cursor.invalid(query.cursor)
            stmt = stmt.where(t.c.sequence < int(raw))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).mappings().all()
        items = [_record(r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        next_cursor = cursor.pack(_CURSOR_TAG, str(items[-1].sequence)) if more else None
        return DeadLetterPage(items=items, next_cursor=next_cursor)


def _record(r: Mapping[Any, Any]) -> DeadLetterRecord:
    payload = bytes(r["payload"])
    return DeadLetterRecord(
        stream=r["stream"],
        sequence=r["sequence"],
        subject=r["subject"],
        deliveries=r["deliveries"],
        error=r["error"],
        at=r["at"],
        size=len(payload),
        payload_base64=base64.b64encode(payload[:PAYLOAD_PREVIEW_BYTES]).decode(),
        payload_truncated=len(payload) > PAYLOAD_PREVIEW_BYTES,
    )
