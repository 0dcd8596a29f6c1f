"""Job records: the merge rules (pure), then the writer and queries on a real database (SQLite,
and PostgreSQL when one is configured), no NATS."""

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import (
    Accepted,
    GetJob,
    JobAccepted,
    JobContainer,
    JobEvent,
    JobFinished,
    JobQuery,
    JobResult,
    JobSpec,
    JobStarted,
    JobStatus,
    RegistryAuth,
)
from store.db import make_sessions
from store.errors import BadRequest, NotFound
from store.job_merge import JobState, merge_job
from store.job_queries import JobQueries, decode_job_cursor, encode_job_cursor
from store.queries import encode_cursor
from store.writer import EventWriter
from tests.unit.test_store_backends import BACKENDS, migrated_engine

T0 = datetime(2025, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
JOB = "job-1"


def spec(**kw: Any) -> JobSpec:
    container = JobContainer(
        image="busybox:1",
        command=["sh", "-c", "echo hi"],
        env={"A": "1"},
        registry_auth=RegistryAuth(username="u", password="hunter2"),
    )
    base: dict[str, Any] = dict(name="nightly", description="d", priority=7, container=container, metadata={"k": [1]})
    return JobSpec(**{**base, **kw})


def accepted(job_id: str = JOB, number: int = 3, at: datetime = T0, **kw: Any) -> JobAccepted:
    return JobAccepted(job_id=job_id, number=number, at=at, spec=spec(**kw))


def started(node: str = "n1", seconds: int = 1, job_id: str = JOB, **kw: Any) -> JobStarted:
    return JobStarted(job_id=job_id, at=T0 + timedelta(seconds=seconds), node=node, container=f"ctr-{node}", **kw)


def finished(status: JobStatus = JobStatus.FINISHED, seconds: int = 10, job_id: str = JOB, **kw: Any) -> JobFinished:
    result = JobResult(
        executed_at=T0 + timedelta(seconds=1),
        finished_at=T0 + timedelta(seconds=seconds),
        duration_ms=9000.0,
        exit_code=0 if status is JobStatus.FINISHED else 1,
        error=None if status is JobStatus.FINISHED else "boom",
    )
    base: dict[str, Any] = dict(job_id=job_id, at=T0 + timedelta(seconds=seconds), status=status, result=result)
    return JobFinished(**{**base, **kw})


def fold(events: list[JobEvent]) -> JobState:
    state: JobState | None = None
    for event in events:
        state = merge_job(state, event)
    assert state is not None
    return state


# --- merge rules ------------------------------------------------------------------------------


def test_accepted_creates_a_queued_job_without_credentials() -> None:
    record = fold([accepted()]).to_record()
    assert record.status is JobStatus.QUEUED
    assert (record.name, record.priority, record.image, record.number) == ("nightly", 7, "busybox:1", 3)
    assert record.command == ["sh", "-c", "echo hi"] and record.env == {"A": "1"} and record.metadata == {"k": [1]}
    assert record.created_at == record.updated_at == T0
    assert "hunter2" not in record.model_dump_json()


def test_every_order_gives_the_same_job() -> None:
    events: list[JobEvent] = [accepted(), started("n1", 1), started("n2", 5), finished(node="n2")]
    results = {fold(list(order)).to_record().model_dump_json() for order in itertools.permutations(events)}
    assert len(results) == 1
    record = fold(events).to_record()
    assert record.status is JobStatus.FINISHED
    assert (record.node, record.container) == ("n2", "ctr-n2")
    assert record.created_at == T0
    assert record.updated_at == T0 + timedelta(seconds=10)
    assert record.result.exit_code == 0 and record.result.duration_ms == 9000.0


def test_the_same_event_twice_changes_nothing() -> None:
    for event in [accepted(), started(), finished()]:
        assert fold([event, event]) == fold([event])


def test_status_never_moves_back_and_the_first_terminal_wins() -> None:
    state = fold([finished(JobStatus.ERROR, seconds=10), started(seconds=20), finished(JobStatus.FINISHED, seconds=30)])
    assert state.status is JobStatus.ERROR and state.result.error == "boom"
    assert state.updated_at == T0 + timedelta(seconds=20)  # the late start applied, the late finish did not
    assert fold([started(), JobFinished(job_id=JOB, status=JobStatus.QUEUED, result=JobResult())]).status is (
        JobStatus.RUNNING
    )


def test_a_cancel_before_start_is_terminal() -> None:
    state = fold([accepted(), finished(JobStatus.CANCELLED, seconds=2), started(seconds=3)])
    assert state.status is JobStatus.CANCELLED
    assert state.to_record().node == "n1"  # the late start still says where it would have run


def test_the_finishing_node_wins_over_the_latest_start() -> None:
    for order in itertools.permutations([started("n1", 1), finished(node="n9")]):
        assert fold(list(order)).to_record().node == "n9"
    assert fold([started("n1", 1), finished(node=None)]).to_record().node == "n1"


def test_started_before_accepted_is_a_partial_record() -> None:
    record = fold([started("n1", 4)]).to_record()
    assert record.status is JobStatus.RUNNING and record.name == "" and record.image == ""
    assert record.created_at == T0 + timedelta(seconds=4)  # provisional, until accepted says
    assert fold([started("n1", 4), accepted()]).to_record().created_at == T0


# --- database ---------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path) as engine:
        yield engine


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[EventWriter]:
    writer = EventWriter(engine)
    yield writer
    await writer.close()


@pytest.fixture
def queries(engine: AsyncEngine) -> JobQueries:
    return JobQueries(make_sessions(engine))


async def test_a_job_round_trips_through_the_database(writer: EventWriter, queries: JobQueries) -> None:
    events: list[JobEvent] = [accepted(), started("n1", 1), started("n2", 5), finished(node="n2")]
    assert await writer.apply([events[3], events[1]]) == 1
    assert await writer.apply([events[0], events[2]]) == 1
    assert await writer.apply(events) == 0  # redelivered: nothing changes
    assert await queries.get(GetJob(id=JOB)) == fold(events).to_record()


async def test_registry_credentials_never_reach_the_database(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([accepted()])
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM jobs"))).all()
    assert rows and all("hunter2" not in str(value) for row in rows for value in row)


async def test_jobs_and_calls_share_a_batch(writer: EventWriter, queries: JobQueries) -> None:
    assert await writer.apply([accepted(), Accepted(call_id="c1", number=1), started()]) == 2
    assert (await queries.get(GetJob(id=JOB))).status is JobStatus.RUNNING


async def test_unknown_job_is_not_found(queries: JobQueries) -> None:
    with pytest.raises(NotFound, match="job nope not found"):
        await queries.get(GetJob(id="nope"))


async def test_list_newest_first_with_status_and_cursor(writer: EventWriter, queries: JobQueries) -> None:
    events: list[JobEvent] = []
    for n in range(1, 8):
        job_id = f"j{n}"
        # j3 and j4 are created at the same instant: the id breaks the tie.
        at = T0 + timedelta(minutes=min(n, 3) if n in (3, 4) else n)
        events.append(accepted(job_id, n, at=at))
        if n % 2 == 0:
            events.append(finished(job_id=job_id, seconds=n * 60 + 30))
    await writer.apply(events)

    everything: list[str] = []
    query = JobQuery(limit=3)
    while True:
        page = await queries.list(query)
        everything += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        query = JobQuery(limit=3, cursor=page.next_cursor)
    assert everything == ["j7", "j6", "j5", "j4", "j3", "j2", "j1"]

    done = await queries.list(JobQuery(status=JobStatus.FINISHED))
    assert [r.id for r in done.items] == ["j6", "j4", "j2"] and done.next_cursor is None
    exact = await queries.list(JobQuery(limit=7))
    assert len(exact.items) == 7 and exact.next_cursor is None


def test_job_cursors_are_opaque_and_checked() -> None:
    assert decode_job_cursor(encode_job_cursor(T0, "j|1")) == (T0, "j|1")
    for bad in ["", "!!!", encode_cursor(5), encode_job_cursor(T0, "x")[:-2] + "@@"]:
        with pytest.raises(BadRequest, match="invalid cursor"):
            decode_job_cursor(bad)
