"""The end marker of a one-shot command, found in output split anywhere (no Docker)."""

import pytest

from node_agent.containers.docker import STDERR, STDOUT
from node_agent.wire.endmarker import PREFIX, EndStatus, Scanner, read_until_end
from node_agent.wire.stdio import ProtocolError

NONCE = "ab12cd34ef56ab12cd34ef56"
TOKEN = PREFIX + NONCE.encode()


class Frames:
    """An attached stream that yields the given frames, then ends."""

    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self._frames = list(frames)

    async def write(self, data: bytes) -> None: ...

    async def read(self) -> tuple[int, bytes] | None:
        return self._frames.pop(0) if self._frames else None

    async def close(self) -> None: ...


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:i], data[i:j], data[j:]] for i in range(len(data) + 1) for j in range(i, len(data) + 1, 7)]


def test_the_marker_is_found_and_cut_wherever_the_output_is_split() -> None:
    out = b"result \x1e with a look-alike \x1efaas-end:ffff:0:0\n" + TOKEN + b":3:1\n"
    for parts in split_everywhere(out):
        scanner = Scanner(TOKEN)
        passed = b"".join(scanner.feed(p) for p in parts)
        assert scanner.found and passed == out[: out.index(TOKEN)]
        assert bytes(scanner.after) == b":3:1\n"


def test_output_that_only_starts_like_the_marker_passes_once_it_cannot_be_one() -> None:
    scanner = Scanner(TOKEN)
    assert scanner.feed(b"line\n" + TOKEN[:5]) == b"line\n"  # held back: could be the marker
    assert scanner.feed(b"x") == TOKEN[:5] + b"x" and not scanner.found


async def test_read_until_end_waits_for_both_streams_and_reports_the_status() -> None:
    logged: list[bytes] = []

    async def on_log(stream: int, data: bytes) -> None:
        logged.append(data)

    frames = [
        (STDOUT, b'{"a": 1}\n' + TOKEN[:4]),
        (STDOUT, TOKEN[4:] + b":137:1\n"),
        (STDERR, b"oops\n" + TOKEN + b"\n"),
    ]
    streams, status = await read_until_end(Frames(frames), NONCE, 1 << 20, 1 << 20, on_log)
    assert status == EndStatus(exit_code=137, oom_kills=1)
    assert bytes(streams.stdout) == b'{"a": 1}\n' and bytes(streams.stderr) == b"oops\n" and logged == [b"oops\n"]


async def test_a_stream_that_ends_before_its_marker_has_no_status() -> None:
    streams, status = await read_until_end(Frames([(STDOUT, b"partial")]), NONCE, 1 << 20, 1 << 20)
    assert status is None and bytes(streams.stdout) == b"partial"


async def test_a_garbled_status_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        await read_until_end(Frames([(STDOUT, TOKEN + b":x:0\n"), (STDERR, TOKEN + b"\n")]), NONCE, 1024, 1024)
