"""Log chunks: stored once per (id, attempt, seq), read back as the latest attempt's lines in
order, cut to what one NATS message may carry. SQLite, and PostgreSQL when configured."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas import Accepted, GetLogs, JobStarted, LogEntry, LogPage, Logs, encode
from store.db import make_sessions
from store.errors import NotFound
from store.log_queries import LogQueries
from store.tables import call_logs
from store.writer import EventWriter
from tests.unit.test_store_backends import BACKENDS, migrated_engine

T0 = datetime(2025, 4, 5, 6, 7, 8, 123456, tzinfo=UTC)
MiB = 1 << 20


def entry(text: str, n: int = 0, stream: Literal["stdout", "stderr"] = "stdout") -> LogEntry:
    return LogEntry(at=T0 + timedelta(milliseconds=n), stream=stream, text=text)


def chunk(seq: int, texts: list[str], *, key: str = "c1", attempt: int = 1, truncated: bool = False) -> Logs:
    lines = [entry(t, seq * 100 + i, "stderr" if i % 2 else "stdout") for i, t in enumerate(texts)]
    return Logs(call_id=key, number=1, attempt=attempt, seq=seq, lines=lines, truncated=truncated, at=T0)


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(request.param, tmp_path) as engine:
        yield engine


@pytest.fixture
async def writer(engine: AsyncEngine) -> AsyncIterator[EventWriter]:
    writer = EventWriter(engine)
    yield writer
    await writer.close()


def queries(engine: AsyncEngine, max_bytes: int = MiB) -> LogQueries:
    return LogQueries(make_sessions(engine), max_bytes=max_bytes)


async def count_chunks(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(call_logs))).scalar_one())


async def test_lines_come_back_in_chunk_order(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([chunk(2, ["e", "f"]), chunk(0, ["a", "b"])])
    await writer.apply([chunk(1, ["c", "d"])])
    page = await queries(engine).get(GetLogs(id="c1"))
    assert [line.text for line in page.lines] == ["a", "b", "c", "d", "e", "f"]
    assert page.lines[0] == entry("a", 0) and page.lines[1].stream == "stderr"
    assert not page.truncated


async def test_a_redelivered_chunk_is_stored_once(engine: AsyncEngine, writer: EventWriter) -> None:
    first = chunk(0, ["once"])
    assert await writer.apply([first]) == 1
    assert await writer.apply([first, first, chunk(1, ["twice"]), chunk(1, ["twice"])]) == 1
    assert await count_chunks(engine) == 2
    page = await queries(engine).get(GetLogs(id="c1"))
    assert [line.text for line in page.lines] == ["once", "twice"]


async def test_only_the_latest_attempt_counts(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([chunk(0, ["try 1"], attempt=1), chunk(1, ["more 1"], attempt=1, truncated=True)])
    await writer.apply([chunk(0, ["try 2"], attempt=2)])
    page = await queries(engine).get(GetLogs(id="c1"))
    assert [line.text for line in page.lines] == ["try 2"] and not page.truncated


async def test_truncated_if_any_chunk_was(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([chunk(0, ["a"]), chunk(1, ["b"], truncated=True), chunk(2, ["c"])])
    page = await queries(engine).get(GetLogs(id="c1"))
    assert page.truncated and [line.text for line in page.lines] == ["a", "b", "c"]


async def test_unknown_ids_are_not_found_known_ones_without_logs_are_empty(
    engine: AsyncEngine, writer: EventWriter
) -> None:
    with pytest.raises(NotFound, match="no call or job nope"):
        await queries(engine).get(GetLogs(id="nope"))
    await writer.apply([Accepted(call_id="quiet", number=1), JobStarted(job_id="quiet-job", node="n1")])
    for key in ("quiet", "quiet-job"):
        assert await queries(engine).get(GetLogs(id=key)) == LogPage(id=key, lines=[])


async def test_job_logs_are_kept_the_same_way(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([chunk(0, ["job output"], key="job-7")])
    page = await queries(engine).get(GetLogs(id="job-7"))
    assert [line.text for line in page.lines] == ["job output"]


@pytest.mark.parametrize("max_bytes", [600, 1000, 4096])
async def test_a_page_is_cut_to_the_byte_budget(engine: AsyncEngine, writer: EventWriter, max_bytes: int) -> None:
    texts = [f"line {n:03d} " + "x" * 50 for n in range(60)]
    await writer.apply([chunk(seq, texts[seq * 10 : seq * 10 + 10]) for seq in range(6)])
    page = await queries(engine, max_bytes).get(GetLogs(id="c1"))
    size = len(encode(page))
    assert page.truncated
    assert max_bytes - 200 < size <= max_bytes
    # The first part, in order; only the last line may be cut short.
    got = [line.text for line in page.lines]
    assert got[:-1] == texts[: len(got) - 1]
    assert texts[len(got) - 1].startswith(got[-1]) and got[-1]


async def test_more_than_a_nats_message_comes_back_as_its_first_mib(engine: AsyncEngine, writer: EventWriter) -> None:
    # 3 MiB of output in chunks of 64 lines of 1 KiB, and one line with non-ASCII text.
    line = "é" + "y" * 1000
    events = [chunk(seq, [f"{seq:04d}:{line}"] * 64) for seq in range(48)]
    await writer.apply(events)
    page = await queries(engine, MiB).get(GetLogs(id="c1"))
    size = len(encode(page))
    assert page.truncated and MiB - 1200 < size <= MiB
    assert page.lines[0].text == f"0000:{line}"


async def test_a_single_line_bigger_than_the_budget_is_cut(engine: AsyncEngine, writer: EventWriter) -> None:
    await writer.apply([chunk(0, ["z" * 5000, "after"])])
    page = await queries(engine, 2000).get(GetLogs(id="c1"))
    assert page.truncated and len(page.lines) == 1
    assert 1800 < len(encode(page)) <= 2000 and set(page.lines[0].text) == {"z"}
