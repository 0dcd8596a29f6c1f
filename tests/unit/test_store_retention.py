"""Retention on both backends: records older than the retention go with their log chunks, in
bounded batches (calls in windows by number); newer ones stay, and so do their chunks
whatever their time; a round with nothing to delete deletes nothing."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import JobAccepted, JobContainer, JobSpec, LogEntry, Logs
from store.deadletter import DeadLetter
from store.retention import Retention
from store.tables import call_logs, calls, dead_letters, jobs
from store.writer import EventWriter
from tests.integration.test_store_support import story
from tests.unit.test_store_backends import BACKENDS, migrated_engine

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=40)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path) as engine:
        yield engine


def chunk(key: str, seq: int, at: datetime) -> Logs:
    return Logs(call_id=key, number=1, attempt=1, seq=seq, lines=[LogEntry(at=at, stream="stdout", text="hi")], at=at)


def job(job_id: str, at: datetime) -> JobAccepted:
    spec = JobSpec(name=job_id, container=JobContainer(image="alpine", command=["true"]))
    return JobAccepted(job_id=job_id, number=1, at=at, spec=spec)


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_old_records_go_with_their_logs_in_batches_and_new_ones_stay(engine: AsyncEngine) -> None:
    writer = EventWriter(engine)
    try:
        old_calls = [f"old{i}" for i in range(5)]
        for i, call_id in enumerate(old_calls):
            await writer.apply([*story(call_id, i + 1), chunk(call_id, 0, OLD)])
        # A chunk's time is the function's: an old one of a kept record stays with it.
        await writer.apply([*story("new", 10), chunk("new", 0, NOW), chunk("new", 1, OLD)])
        await writer.apply([job("jold", OLD), chunk("jold", 0, OLD), job("jnew", NOW)])
        # Dead letters.
        for seq, at in ((1, OLD), (2, NOW)):
            letter = DeadLetter.of("EVENTS", seq, "faas.events.x.accepted", 1, "refused", b"\x00\xff")
            await writer.dead_letter(DeadLetter(**{**letter.values(), "at": at}))
    finally:
        await writer.close()
    # updated_at is the store's clock: make the old calls old.
    async with engine.begin() as conn:
        await conn.execute(update(calls).where(calls.c.id.in_(old_calls)).values(updated_at=OLD))
        await conn.execute(update(calls).where(calls.c.id == "new").values(updated_at=NOW))

    retention = Retention(engine, keep=timedelta(days=30), batch=2)
    done = await retention.run_once(now=NOW)
    assert (done.calls, done.jobs, done.log_chunks, done.dead_letters) == (5, 1, 6, 1)
    async with engine.connect() as conn:
        assert set((await conn.execute(select(calls.c.id))).scalars()) == {"new"}
        assert set((await conn.execute(select(jobs.c.id))).scalars()) == {"jnew"}
        chunks = (await conn.execute(select(call_logs.c.id, call_logs.c.seq).order_by(call_logs.c.seq))).all()
        assert [tuple(c) for c in chunks] == [("new", 0), ("new", 1)]
        assert list((await conn.execute(select(dead_letters.c.sequence))).scalars()) == [2]

    again = await retention.run_once(now=NOW)
    assert again.total == 0
    assert retention.totals.calls == 5


async def test_nothing_is_deleted_within_the_retention(engine: AsyncEngine) -> None:
    writer = EventWriter(engine)
    try:
        await writer.apply([*story("a", 1), chunk("a", 0, datetime.now(UTC))])
    finally:
        await writer.close()
    done = await Retention(engine, keep=timedelta(days=1)).run_once()
    assert done.total == 0
    assert await count(engine, calls) == 1 and await count(engine, call_logs) == 1
