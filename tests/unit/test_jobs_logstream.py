"""LogPublisher: line splitting across frames, batching, truncation, stdout capture."""

import asyncio
import time
from typing import Any

import pytest

from node_agent.containers.docker import STDERR, STDOUT
from node_agent.logstream import INSTALL, LogPublisher
from schemas import Layout
from tests.fakes.publisher import FakePublisher

LAYOUT = Layout("tl")


def fake_publisher() -> FakePublisher:
    return FakePublisher(stream=LAYOUT.events_stream)


def publisher(fake: FakePublisher, max_bytes: int = 1 << 20, **kw: Any) -> LogPublisher:
    kw.setdefault("flush_interval_s", 60.0)  # only explicit or size-triggered flushes, unless a test asks
    return LogPublisher(fake, LAYOUT, "call1", 2, max_bytes, number=7, **kw)


async def test_lines_span_frames_and_streams_keep_their_own_partials() -> None:
    fake = fake_publisher()
    async with publisher(fake) as logs:
        await logs.write(STDOUT, b"hel")
        await logs.write(STDERR, b"oops ")
        await logs.write(STDOUT, b"lo\r\nwor")
        await logs.write(STDERR, b"happened\n")
        await logs.write(STDOUT, b"ld\n\nlast without newline")
    assert fake.texts() == [
        ("stdout", "hello"),
        ("stderr", "oops happened"),
        ("stdout", "world"),
        ("stdout", ""),
        ("stdout", "last without newline"),
    ]
    [chunk] = fake.chunks()
    assert (chunk.call_id, chunk.number, chunk.attempt, chunk.seq, chunk.truncated) == ("call1", 7, 2, 0, False)
    subject, _, headers = fake.sent[0]
    assert subject == LAYOUT.event("call1", "log")
    assert headers == {"Nats-Msg-Id": "call1.log.2.0"}


async def test_utf8_split_across_frames_and_bad_bytes_replaced() -> None:
    fake = fake_publisher()
    async with publisher(fake) as logs:
        await logs.write(STDOUT, b"caf" + b"\xc3")
        await logs.write(STDOUT, b"\xa9 \xe2\x9c")
        await logs.write(STDOUT, b"\x93\n\xff bad\n")
        await logs.write(STDERR, b"cut \xe2\x9c")  # incomplete at the end: replaced on close
    assert fake.texts() == [("stdout", "café ✓"), ("stdout", "\ufffd bad"), ("stderr", "cut \ufffd")]


async def test_size_triggers_a_flush_and_seq_counts_chunks() -> None:
    fake = fake_publisher()
    logs = publisher(fake, flush_bytes=1000)
    for i in range(30):
        await logs.write(STDOUT, f"line {i:02d} ".encode() + b"x" * 40 + b"\n")
    assert len(fake.sent) >= 2  # ~100 bytes a line with overhead: a chunk about every 10 lines
    await logs.close()
    chunks = fake.chunks()
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [t for _, t in fake.texts()] == [f"line {i:02d} " + "x" * 40 for i in range(30)]
    assert len({h["Nats-Msg-Id"] for _, _, h in fake.sent}) == len(chunks)
    assert max(len(p) for _, p, _ in fake.sent) < 2000


async def test_time_triggers_a_flush_without_close() -> None:
    fake = fake_publisher()
    logs = publisher(fake, flush_interval_s=0.02)
    await logs.write(STDERR, b"progress 1\n")
    deadline = time.monotonic() + 5
    while not fake.sent:
        assert time.monotonic() < deadline, "no time-triggered flush"
        await asyncio.sleep(0.005)
    assert fake.texts() == [("stderr", "progress 1")]
    await logs.write(STDERR, b"progress 2\n")
    await logs.close()
    assert fake.texts() == [("stderr", "progress 1"), ("stderr", "progress 2")]
    assert [c.seq for c in fake.chunks()] == [0, 1]


async def test_truncation_publishes_a_marker_and_drops_the_rest() -> None:
    fake = fake_publisher()
    logs = publisher(fake, max_bytes=10, keep_stdout=100)
    await logs.write(STDOUT, b"hello\nworld\nmore\n")
    assert logs.truncated
    chunks = fake.chunks()
    assert chunks[-1].truncated
    assert fake.texts() == [("stdout", "hello"), ("stdout", "worl"), ("stderr", "[faas: log truncated at 10 bytes]")]
    await logs.write(STDERR, b"after the cut\n")
    await logs.write(STDOUT, b"still kept as result\n")
    await logs.close()
    assert len(fake.chunks()) == len(chunks)  # nothing more published
    assert logs.stdout == b"hello\nworld\nmore\nstill kept as result\n"
    assert logs.stderr_tail == b"after the cut\n"


async def test_stdout_kept_up_to_a_cap_and_stderr_tail() -> None:
    fake = fake_publisher()
    async with publisher(fake, keep_stdout=8, keep_stderr=6, publish_stdout=False) as logs:
        await logs.write(STDOUT, b'{"result": 1}\n')
        await logs.write(STDERR, b"first\nsecond\n")
    assert logs.stdout == b'{"result' and logs.stdout_truncated
    assert logs.stderr_tail == b"econd\n"
    assert fake.texts() == [("stderr", "first"), ("stderr", "second")]  # stdout not published


async def test_an_endless_line_is_published_in_pieces() -> None:
    fake = fake_publisher()
    async with publisher(fake, max_line_chars=10) as logs:
        await logs.write(STDOUT, b"a" * 25)
        await logs.write(STDOUT, b"b\n")
    assert [t for _, t in fake.texts()] == ["a" * 10, "a" * 10, "aaaaab"]


async def test_a_failed_publish_is_dropped_not_raised() -> None:
    fake = fake_publisher()
    logs = publisher(fake)
    await logs.write(STDOUT, b"lost\n")
    fake.fail = True
    await logs.flush()
    fake.fail = False
    await logs.write(STDOUT, b"kept\n")
    await logs.close()
    assert logs.dropped_chunks == 1
    assert [(c.seq, [line.text for line in c.lines]) for c in fake.chunks()] == [(1, ["kept"])]


async def test_consume_reads_frames_until_the_source_ends_or_fails() -> None:
    async def frames() -> Any:
        yield STDOUT, b"one\n"
        yield STDERR, b"two\n"
        raise OSError("engine connection reset")

    fake = fake_publisher()
    async with publisher(fake) as logs:
        await logs.consume(frames())
    assert fake.texts() == [("stdout", "one"), ("stderr", "two")]


async def test_close_is_idempotent_and_write_after_close_is_ignored() -> None:
    fake = fake_publisher()
    logs = publisher(fake)
    await logs.write(STDOUT, b"x\n")
    await logs.close()
    await logs.close()
    await logs.write(STDOUT, b"y\n")
    assert fake.texts() == [("stdout", "x")]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        publisher(fake_publisher(), flush_bytes=0)


async def test_install_output_is_its_own_stream_and_not_the_stderr_tail() -> None:
    fake = fake_publisher()
    async with publisher(fake) as logs:
        await logs.write(INSTALL, b"Collecting left-pad\nSuccessfully installed left-pad\n")
        await logs.write(STDERR, b"Traceback: boom\n")
    assert fake.texts() == [
        ("install", "Collecting left-pad"),
        ("install", "Successfully installed left-pad"),
        ("stderr", "Traceback: boom"),
    ]
    assert logs.stderr_tail == b"Traceback: boom\n"  # an error's tail is the call's, not pip's
