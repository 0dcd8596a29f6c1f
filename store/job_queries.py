"""Reading job records: one job by id, and pages newest first (by creation time, then id)."""

from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import GetJob, JobPage, JobQuery, JobRecord
from store import cursor
from store.errors import NotFound
from store.rows import row_to_job
from store.tables import jobs

_CURSOR_TAG = "j"


def encode_job_cursor(created_at: datetime, job_id: str) -> str:
    """An opaque cursor: the next page holds jobs before (created_at, id)."""
    return cursor.pack(_CURSOR_TAG, f"{created_at.isoformat()}|{job_id}")


def decode_job_cursor(value: str) -> tuple[datetime, str]:
    raw = cursor.unpack(_CURSOR_TAG, value)
    at, sep, job_id = raw.partition("|")
    try:
        created_at = datetime.fromisoformat(at)
    except ValueError:
        raise cursor.invalid(value) from None
    if not sep or not job_id or created_at.tzinfo is None:
        raise cursor.invalid(value)
    try:
        # What the database compares: a time with no UTC equivalent is no cursor of ours.
        created_at = created_at.astimezone(UTC)
    except OverflowError:
        raise cursor.invalid(value) from None
    return created_at, job_id


class JobQueries:
    """Read-only queries on the jobs table."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, request: GetJob) -> JobRecord:
        """The job with this id; raises :class:`NotFound`."""
        async with self._sessions() as session:
            row = (await session.execute(select(jobs).where(jobs.c.id == request.id))).mappings().first()
        if row is None:
            raise NotFound(f"job {request.id} not found")
        return row_to_job(row).to_record()

    async def list(self, query: JobQuery) -> JobPage:
        """A page of jobs, newest first; ``next_cursor`` is None on the last page."""
        order = (jobs.c.created_at.desc(), jobs.c.id.desc())
        stmt = select(jobs).order_by(*order).limit(query.limit + 1)
        if query.status is not None:
            stmt = stmt.where(jobs.c.status == query.status.value)
        if query.cursor is not None:
            created_at, job_id = decode_job_cursor(query.cursor)
            stmt = stmt.where(
                or_(jobs.c.created_at < created_at, and_(jobs.c.created_at == created_at, jobs.c.id < job_id))
            )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).mappings().all()
        states = [row_to_job(r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        next_cursor = encode_job_cursor(states[-1].created_at, states[-1].id) if more else None
        return JobPage(items=[s.to_record() for s in states], next_cursor=next_cursor)
