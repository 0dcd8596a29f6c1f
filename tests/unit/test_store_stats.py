"""store.stats_queries: call statistics over a window, from records written by the real writer
into a real database (SQLite, and PostgreSQL when configured), no NATS."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import Accepted, CallStatus, ErrorInfo, Finished
from schemas.fold import RecordEvent
from schemas.stats import StatsQuery
from store.db import make_sessions
from store.stats_queries import StatsQueries, percentile
from store.writer import EventWriter
from tests.unit.test_store_backends import BACKENDS, migrated_engine

UNTIL = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path) as engine:
        yield engine


def call(
    number: int,
    finished_s_ago: float | None,
    latency_ms: float,
    status: CallStatus = CallStatus.DONE,
    function: str = "dice",
) -> list[RecordEvent]:
    """A call that finished ``finished_s_ago`` before UNTIL after ``latency_ms`` (None: still running)."""
    end = UNTIL - timedelta(seconds=finished_s_ago or 0)
    start = end - timedelta(milliseconds=latency_ms)
    events: list[RecordEvent] = [Accepted(call_id=f"c{number}", number=number, at=start, function=function)]
    if finished_s_ago is not None:
        error = None if status is CallStatus.DONE else ErrorInfo(type="Boom", message=f"c{number} failed")
        events.append(Finished(call_id=f"c{number}", number=number, at=end, status=status, error=error))
    return events


async def stats_of(engine: AsyncEngine, events: list[RecordEvent], **kw: object) -> StatsQueries:
    writer = EventWriter(engine)
    try:
        await writer.apply(events)
    finally:
        await writer.close()
    return StatsQueries(make_sessions(engine), **kw)  # type: ignore[arg-type]


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7.0], 99) == 7 and percentile([], 50) is None


async def test_buckets_counts_and_percentiles(engine: AsyncEngine) -> None:
    events = [
        *call(1, 250, 10),  # before the 120 s window: not counted
        *call(2, 95, 100),
        *call(3, 91, 300, CallStatus.ERROR),
        *call(4, 5, 20),
        *call(5, 5, 40, CallStatus.TIMEOUT),
        *call(6, None, 0),  # running: not counted
        *call(7, 1, 60, function="other"),
    ]
    stats = await (await stats_of(engine, events)).compute(StatsQuery(window_s=120, step_s=30, until=UNTIL))
    assert stats.since == UNTIL - timedelta(seconds=120) and stats.until == UNTIL
    assert [b.at for b in stats.buckets] == [UNTIL - timedelta(seconds=s) for s in (120, 90, 60, 30)]
    assert [b.calls for b in stats.buckets] == [2, 0, 0, 3]
    assert [b.errors for b in stats.buckets] == [1, 0, 0, 1]
    assert (stats.buckets[0].p50_ms, stats.buckets[0].p99_ms) == (100, 300)
    assert stats.buckets[1].p50_ms is None
    assert stats.finished == 5 and stats.calls_per_s == round(5 / 120, 3)
    assert stats.by_status == {"DONE": 3, "ERROR": 1, "TIMEOUT": 1}
    assert (stats.p50_ms, stats.p95_ms) == (60, 300)
    # The latest failures first, without params or result, whatever the window.
    assert [r.number for r in stats.recent_errors] == [5, 3]
    assert stats.recent_errors[0].error is not None and stats.recent_errors[0].params_omitted
    assert not stats.capped


async def test_one_function_and_the_error_count(engine: AsyncEngine) -> None:
    events = [*call(1, 10, 5, CallStatus.ERROR), *call(2, 10, 5, CallStatus.ERROR, function="other")]
    queries = await stats_of(engine, events)
    stats = await queries.compute(StatsQuery(window_s=60, step_s=10, function="other", errors=1, until=UNTIL))
    assert stats.finished == 1 and [r.number for r in stats.recent_errors] == [2]
    none = await queries.compute(StatsQuery(window_s=60, step_s=10, errors=0, until=UNTIL))
    assert none.recent_errors == [] and none.finished == 2


async def test_paging_stops_past_the_lookback_and_at_the_cap(engine: AsyncEngine) -> None:
    # Pages of 10 rows: 30 calls in the window, below them 29 that ended long before, and
    # call 1, which ran an hour and ended in the window: past the lookback, it is not read.
    events = [*call(1, 10, 3_600_000)]
    events += [e for n in range(2, 31) for e in call(n, 3600 + n, 1)]
    events += [e for n in range(31, 61) for e in call(n, 10, 1)]
    queries = await stats_of(engine, events, page=10, lookback=timedelta(minutes=1))
    stats = await queries.compute(StatsQuery(window_s=60, step_s=10, until=UNTIL))
    assert stats.finished == 30 and not stats.capped
    capped = await (await stats_of(engine, [], page=10, max_rows=20)).compute(
        StatsQuery(window_s=60, step_s=10, until=UNTIL)
    )
    assert capped.capped and capped.finished == 20


def test_a_window_of_too_many_buckets_is_refused() -> None:
    with pytest.raises(ValidationError, match="buckets"):
        StatsQuery(window_s=3600, step_s=1)
    assert StatsQuery(window_s=3600, step_s=10).window_s == 3600
    with pytest.raises(ValidationError, match="too early"):
        StatsQuery(window_s=60, until="0001-01-01T00:00:30Z")
    with pytest.raises(ValidationError, match="no UTC time"):
        StatsQuery(until="9999-12-31T23:59:59-05:00")
