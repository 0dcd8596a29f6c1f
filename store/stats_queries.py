"""Call statistics over a recent window (``schemas.stats``): calls per second, latency
percentiles per bucket, counts by status, and the latest failed calls.

No index is added for this (an index on ``finished_at``, a column every ``finished`` event
writes, would cost the ingest path on each write, as ``store.retention`` explains): calls are
read newest first by their number, in pages of ``page`` rows of the few columns needed, until
a page whose newest call was created more than ``lookback`` before the window began (call
numbers increase with time). So a call that ran longer than ``lookback`` before ending in the
window is not counted; and one answer reads at most ``max_rows`` rows (``capped`` says it
stopped there: under a rate that high, ask for a shorter window).
"""

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import CallRecord, CallStatus
from schemas.stats import CallStats, StatsBucket, StatsQuery
from store.rows import row_to_record
from store.tables import calls

_FAILED = (CallStatus.ERROR.value, CallStatus.TIMEOUT.value)
_COLUMNS = (calls.c.number, calls.c.status, calls.c.created_at, calls.c.finished_at)


def percentile(sorted_ms: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_ms:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_ms)))
    return round(sorted_ms[rank - 1], 3)


class StatsQueries:
    """Read-only: ``await stats.compute(StatsQuery(...))``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        page: int = 2000,
        max_rows: int = 50_000,
        lookback: timedelta = timedelta(minutes=15),
    ) -> None:
        self._sessions = sessions
        self._page = page
        self._max_rows = max_rows
        self._lookback = lookback

    async def compute(self, query: StatsQuery) -> CallStats:
        until = query.until or datetime.now(UTC)
        since = until - timedelta(seconds=query.window_s)
        n_buckets = math.ceil(query.window_s / query.step_s)
        # Buckets end at ``until``: the first one may start before ``since``, never after.
        first = until - timedelta(seconds=n_buckets * query.step_s)
        latencies: list[list[float]] = [[] for _ in range(n_buckets)]
        counts = [0] * n_buckets
        errors = [0] * n_buckets
        by_status: Counter[str] = Counter()
        capped = False
        async with self._sessions() as session:
            rows = 0
            below: int | None = None
            while True:
                stmt = select(*_COLUMNS).order_by(calls.c.number.desc()).limit(self._page)
                if query.function is not None:
                    stmt = stmt.where(calls.c.function == query.function)
                if below is not None:
                    stmt = stmt.where(calls.c.number < below)
                page = (await session.execute(stmt)).all()
                for number, status, created_at, finished_at in page:
                    below = number
                    if finished_at is None or not since < finished_at <= until:
                        continue
                    by_status[status] += 1
                    index = min(n_buckets - 1, int((finished_at - first).total_seconds() // query.step_s))
                    counts[index] += 1
                    if status in _FAILED:
                        errors[index] += 1
                    if created_at is not None:
                        latencies[index].append((finished_at - created_at).total_seconds() * 1000)
                rows += len(page)
                if len(page) < self._page or _older(page[0][2], since - self._lookback):
                    break
                if rows >= self._max_rows:
                    capped = True
                    break
            recent = await self._recent_errors(session, query) if query.errors else []
        buckets = []
        every: list[float] = []
        for i in range(n_buckets):
            ms = sorted(latencies[i])
            every += ms
            buckets.append(
                StatsBucket(
                    at=first + timedelta(seconds=i * query.step_s),
                    calls=counts[i],
                    errors=errors[i],
                    p50_ms=percentile(ms, 50),
                    p95_ms=percentile(ms, 95),
                    p99_ms=percentile(ms, 99),
                )
            )
        every.sort()
        finished = sum(by_status.values())
        return CallStats(
            since=since,
            until=until,
            step_s=query.step_s,
            buckets=buckets,
            finished=finished,
            by_status=dict(by_status),
            calls_per_s=round(finished / query.window_s, 3),
            p50_ms=percentile(every, 50),
            p95_ms=percentile(every, 95),
            p99_ms=percentile(every, 99),
            recent_errors=recent,
            capped=capped,
        )

    async def _recent_errors(self, session: AsyncSession, query: StatsQuery) -> list[CallRecord]:
        """The latest failed calls, one indexed read per failing status (status, number)."""
        found: list[RowMapping] = []
        for status in _FAILED:
            stmt = select(calls).where(calls.c.status == status).order_by(calls.c.number.desc()).limit(query.errors)
            if query.function is not None:
                stmt = stmt.where(calls.c.function == query.function)
            found += (await session.execute(stmt)).mappings().all()
        found.sort(key=lambda row: row["number"], reverse=True)
        return [_light(row_to_record(row)) for row in found[: query.errors]]


def _older(created_at: datetime | None, than: datetime) -> bool:
    return created_at is not None and created_at < than


def _light(record: CallRecord) -> CallRecord:
    """A record for a list: no params nor result (they can be large), the error kept."""
    return record.model_copy(update={"params": None, "params_omitted": True, "result": None})
