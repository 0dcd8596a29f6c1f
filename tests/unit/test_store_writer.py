"""store.writer and store.queries on calls: batches of events into a real database (SQLite,
and PostgreSQL when one is configured: see test_store_backends), no NATS."""

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import (
    Accepted,
    Callback,
    CallbackOutcome,
    CallQuery,
    CallRecord,
    CallStatus,
    ErrorInfo,
    Finished,
    GetCall,
    Started,
)
from schemas.fold import RecordEvent, merge_all
from store.db import make_engine, make_sessions
from store.errors import BadRequest, NotFound
from store.migrate import migrate
from store.queries import CallQueries, decode_cursor, encode_cursor
from store.tables import calls
from store.writer import EventWriter
from tests.unit.test_store_backends import BACKENDS, migrated_engine

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


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
def queries(engine: AsyncEngine) -> CallQueries:
    return CallQueries(make_sessions(engine))


def story(call_id: str, number: int, *, params: Any = None, result: Any = None) -> list[RecordEvent]:
    at = T0 + timedelta(minutes=number)
    return [
        Accepted(call_id=call_id, number=number, at=at, function="dice", runtime="py", params=params),
        Started(call_id=call_id, number=number, at=at + timedelta(seconds=1), node="n1", container="k1"),
        Finished(
            call_id=call_id,
            number=number,
            at=at + timedelta(seconds=2),
            status=CallStatus.DONE,
            result=result,
            duration_ms=5.0,
            exit_code=0,
        ),
    ]


def expected(events: list[RecordEvent]) -> dict[str, CallRecord]:
    records: dict[str, CallRecord] = {}
    merge_all(records, events)
    return records


async def test_sqlite_file_gets_its_directory_and_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/nested/dir/calls.db")
    try:
        await migrate(engine)
        assert (tmp_path / "nested" / "dir" / "calls.db").exists()
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    finally:
        await engine.dispose()


async def test_a_batch_is_stored_as_merged_in_memory(writer: EventWriter, queries: CallQueries) -> None:
    events = story("a", 1, params={"n": 6}, result=[1, 2]) + story("b", 2, params="p", result="r")
    assert await writer.apply(events) == 2
    for call_id, record in expected(events).items():
        assert await queries.get(GetCall(id=call_id)) == record


async def test_batching_and_duplicates_do_not_change_the_outcome(writer: EventWriter, queries: CallQueries) -> None:
    events = story("a", 1, result={"x": None})
    for event in events:  # one event per transaction, then everything again in one batch
        await writer.apply([event])
    assert await writer.apply(events + events) == 0  # nothing changed: nothing written
    assert await queries.get(GetCall(id="a")) == expected(events)["a"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
async def test_one_batch_in_any_order_is_the_same_as_one_by_one(
    engine: AsyncEngine, writer: EventWriter, queries: CallQueries, order: tuple[int, ...]
) -> None:
    accepted, started, finished = story("a", 1, params={"n": 1}, result=[6])
    outcome = CallbackOutcome(url="http://cb", delivered=True, attempts=1, at=T0 + timedelta(hours=1))
    events = [accepted, started, finished, Callback(call_id="a", number=1, outcome=outcome)]
    batch = [events[i] for i in order]
    assert await writer.apply(batch) == 1
    one_by_one = EventWriter(engine)
    try:
        for event in events:
            await one_by_one.apply([event.model_copy(update={"call_id": "b", "number": 2})])
    finally:
        await one_by_one.close()
    a = await queries.get(GetCall(id="a"))
    b = await queries.get(GetCall(id="b"))
    assert a.status is CallStatus.DONE and a.callback == outcome
    assert a == b.model_copy(update={"id": "a", "number": 1})


async def test_a_batch_mixing_new_and_stored_records(writer: EventWriter, queries: CallQueries) -> None:
    old = story("old", 1, params="p", result="r")
    done = story("done", 2)
    await writer.apply([old[0], *done])  # "old" is accepted, "done" is over
    new = story("new", 3, params=[3])
    # "old" goes on, "done" hears a late duplicate, "new" is created: only two rows change.
    assert await writer.apply([new[0], old[1], done[1], new[1], old[2], new[2]]) == 2
    everything = old + done + new
    for call_id, record in expected(everything).items():
        assert await queries.get(GetCall(id=call_id)) == record


async def test_a_finished_event_alone_makes_a_whole_record(writer: EventWriter, queries: CallQueries) -> None:
    accepted, started, finished = story("a", 1, params={"n": 1}, result=[6])
    assert isinstance(finished, Finished)
    alone = finished.model_copy(update={"params": {"n": 1}, "created_at": accepted.at, "started_at": started.at})
    await writer.apply([alone])
    record = await queries.get(GetCall(id="a"))
    assert (record.created_at, record.started_at, record.finished_at) == (accepted.at, started.at, finished.at)
    assert record.params == {"n": 1} and record.result == [6] and record.status is CallStatus.DONE
    # The Accepted and Started that come late do not reopen it.
    await writer.apply([started, accepted])
    late = await queries.get(GetCall(id="a"))
    assert late == expected([alone, started, accepted])["a"]
    assert (late.status, late.result, late.created_at, late.finished_at) == (
        CallStatus.DONE,
        [6],
        accepted.at,
        finished.at,
    )


async def test_out_of_order_across_batches(writer: EventWriter, queries: CallQueries) -> None:
    accepted, started, finished = story("a", 1, params=[1])
    await writer.apply([finished])
    await writer.apply([started, accepted])
    record = await queries.get(GetCall(number=1))
    assert record.status is CallStatus.DONE
    assert record.function == "dice" and record.params == [1]
    assert record.created_at == accepted.at


@pytest.mark.parametrize("value", ["text", [1, None], 0, False, 2.5, {"nested": [None]}, None])
async def test_json_columns_hold_any_json_value(writer: EventWriter, queries: CallQueries, value: Any) -> None:
    await writer.apply(story("a", 1, params=value, result=value))
    record = await queries.get(GetCall(id="a"))
    assert record.params == value and record.result == value
    assert type(record.result) is type(value)


async def test_timestamps_come_back_in_utc(writer: EventWriter, queries: CallQueries) -> None:
    east = datetime(2025, 6, 1, 17, 0, tzinfo=timezone(timedelta(hours=5)))
    await writer.apply([Accepted(call_id="a", number=1, at=east)])
    record = await queries.get(GetCall(id="a"))
    assert record.created_at == east and record.created_at is not None
    assert record.created_at.tzinfo is UTC and record.created_at.hour == 12


async def test_errors_round_trip(writer: EventWriter, queries: CallQueries) -> None:
    error = ErrorInfo(type="ValueError", message="bad\nline two")
    await writer.apply([Finished(call_id="a", number=1, status=CallStatus.ERROR, error=error, exit_code=2)])
    record = await queries.get(GetCall(id="a"))
    assert record.error == error and record.exit_code == 2 and record.status is CallStatus.ERROR


async def test_a_number_taken_by_another_call_fails_the_whole_batch(writer: EventWriter, engine: AsyncEngine) -> None:
    await writer.apply([Accepted(call_id="a", number=1)])
    with pytest.raises(IntegrityError):
        await writer.apply([Accepted(call_id="b", number=2), Accepted(call_id="c", number=1)])
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(calls))).scalar() == 1


async def test_big_batches_are_loaded_in_chunks(writer: EventWriter, engine: AsyncEngine) -> None:
    events: list[RecordEvent] = [Accepted(call_id=f"c{i}", number=i) for i in range(1, 1201)]
    assert await writer.apply(events) == 1200
    assert await writer.apply([Started(call_id=e.call_id, number=e.number, node="n") for e in events]) == 1200
    async with engine.connect() as conn:
        running = select(func.count()).select_from(calls).where(calls.c.status == "RUNNING")
        assert (await conn.execute(running)).scalar() == 1200


async def test_get_unknown_call(queries: CallQueries) -> None:
    with pytest.raises(NotFound, match="call nope not found"):
        await queries.get(GetCall(id="nope"))
    with pytest.raises(NotFound, match="call 42 not found"):
        await queries.get(GetCall(number=42))


async def test_list_filters_and_pages(writer: EventWriter, queries: CallQueries) -> None:
    events: list[RecordEvent] = []
    for n in range(1, 8):
        events += story(f"c{n}", n)[: 1 if n % 2 else 3]  # odd numbers stay QUEUED
    await writer.apply(events)

    page = await queries.list(CallQuery(limit=3))
    assert [r.number for r in page.items] == [7, 6, 5]
    assert page.next_cursor is not None
    page = await queries.list(CallQuery(limit=3, cursor=page.next_cursor))
    assert [r.number for r in page.items] == [4, 3, 2]
    page = await queries.list(CallQuery(limit=3, cursor=page.next_cursor))
    assert [r.number for r in page.items] == [1] and page.next_cursor is None

    done = await queries.list(CallQuery(status=CallStatus.DONE))
    assert [r.number for r in done.items] == [6, 4, 2] and done.next_cursor is None
    window = await queries.list(CallQuery(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=5)))
    assert [r.number for r in window.items] == [4, 3]  # since inclusive, until exclusive
    assert (await queries.list(CallQuery(function="other"))).items == []


async def test_an_exact_last_page_has_no_next_cursor(writer: EventWriter, queries: CallQueries) -> None:
    await writer.apply([Accepted(call_id=f"c{n}", number=n) for n in range(1, 5)])
    page = await queries.list(CallQuery(limit=4))
    assert len(page.items) == 4 and page.next_cursor is None


def test_cursors_are_opaque_and_checked() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert "12345" not in encode_cursor(12345)
    for bad in ["", "!!!", "bm90LWEtY3Vyc29y", encode_cursor(1)[:-1] + "@"]:
        with pytest.raises(BadRequest, match="invalid cursor"):
            decode_cursor(bad)


async def test_how_a_call_was_served_is_recorded(writer: EventWriter, queries: CallQueries) -> None:
    await writer.apply([Finished(call_id="s", number=2, status=CallStatus.DONE, served="stem")])
    record = await queries.get(GetCall(id="s"))
    assert record.served == "stem"
