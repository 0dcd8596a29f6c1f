"""node_agent/wire/socket.py: the socket transport of warm handler containers, against a real
Unix socket served in-process and a fake attach stream (the same ``Attached`` interface)."""

import asyncio
import os
import stat
import tempfile
from pathlib import Path

import pytest

from node_agent.containers.docker import STDERR, STDOUT
from node_agent.errors import StreamClosed
from node_agent.wire.socket import SocketChannel, SocketDir


class FakeAttached:
    """What the container's attach stream would deliver: frames pushed by the test, then EOF."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.closed = False

    async def write(self, data: bytes) -> None:
        raise AssertionError("the socket channel never writes to the attach stream")

    async def read(self) -> tuple[int, bytes] | None:
        return await self.frames.get()

    async def close(self) -> None:
        self.closed = True


async def _echo_server(path: Path) -> asyncio.AbstractServer:
    """A stand-in for the shim: answers every line with ``ok:<line>``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"ok:" + line)
            await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(serve, path=str(path))


def test_socket_dirs_are_private_roots_with_open_container_dirs(tmp_path: Path) -> None:
    root = tmp_path / "sockets"
    dirs = SocketDir(root)
    one, two = dirs.new(), dirs.new()
    assert one != two and one.parent == root == two.parent
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(one.stat().st_mode) == 0o777
    assert SocketDir(root).sweep() == 2 and not one.exists() and not two.exists()
    dirs.cleanup()  # a configured root is left alone
    assert root.is_dir()

    made = SocketDir()
    mine = made.new()
    assert len(str(mine / "call.sock")) < 108  # a Unix socket path's limit
    made.cleanup()
    assert not mine.exists() and not mine.parent.exists()


def test_the_default_root_is_the_nodes_own_so_a_killed_agents_dirs_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert SocketDir(name="n1").sweep() == 0
    assert not (tmp_path / "faas-sock-n1").exists()  # an agent that never makes one: nothing
    killed = SocketDir(name="n1")
    left = killed.new()  # ... and the agent is SIGKILLed: no cleanup
    assert left.parent == tmp_path / "faas-sock-n1"
    assert stat.S_IMODE(left.parent.stat().st_mode) == 0o700
    again = SocketDir(name="n1")
    assert again.sweep() == 1 and not left.exists()
    again.new()
    again.cleanup()
    assert not (tmp_path / "faas-sock-n1").exists()


@pytest.mark.parametrize("planted", ["open", "symlink"])
def test_a_default_root_that_is_not_private_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = tmp_path / "faas-sock-n2"
    if planted == "open":  # made first by someone, readable by others
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
    dirs = SocketDir(name="n2")
    mine = dirs.new()
    assert mine.parent != path and mine.parent.resolve() != (tmp_path / "elsewhere")
    assert stat.S_IMODE(mine.parent.stat().st_mode) == 0o700
    dirs.cleanup()
    assert path.exists() or path.is_symlink()  # someone else's: left alone


async def test_protocol_bytes_come_from_the_socket_and_stray_output_as_stderr(tmp_path: Path) -> None:
    directory = SocketDir(tmp_path / "s").new()
    server = await _echo_server(directory / "call.sock")
    attached = FakeAttached()
    channel = SocketChannel(attached, directory)
    try:
        await channel.connect(timeout=5)
        await channel.write(b"hello\n")
        assert await channel.read() == (STDOUT, b"ok:hello\n")
        attached.frames.put_nowait((STDOUT, b"printed behind the shim's back\n"))
        assert await channel.read() == (STDERR, b"printed behind the shim's back\n")
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()
    assert attached.closed
    assert not directory.exists()
    with pytest.raises(StreamClosed):
        await channel.write(b"after close\n")


async def test_the_end_of_the_socket_is_the_end_of_the_stream(tmp_path: Path) -> None:
    directory = SocketDir(tmp_path / "s").new()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # the shim died

    server = await asyncio.start_unix_server(serve, path=str(directory / "call.sock"))
    channel = SocketChannel(FakeAttached(), directory)
    try:
        await channel.connect(timeout=5)
        assert await channel.read() is None
        assert await channel.read() is None  # and stays ended
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()


async def test_connect_fails_fast_when_the_container_exits_before_listening(tmp_path: Path) -> None:
    directory = SocketDir(tmp_path / "s").new()
    attached = FakeAttached()
    channel = SocketChannel(attached, directory)
    attached.frames.put_nowait(None)  # the attach stream ends: the process is gone
    # StreamClosed, not the hour-long timeout (wait_for's TimeoutError would fail the test)
    with pytest.raises(StreamClosed, match="before its shim listened"):
        await asyncio.wait_for(channel.connect(timeout=3600), 60)
    await channel.close()


async def test_output_nobody_reads_is_bounded_and_resumes_when_read(tmp_path: Path) -> None:
    """An idle container that keeps printing (attach stream) or writing to the socket makes the
    channel stop reading, not grow: its writes block, as with a full pipe."""
    directory = SocketDir(tmp_path / "s").new()
    chunk = b"x" * 65536
    flood_done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(160):  # 10 MiB on the socket
            writer.write(chunk)
            await writer.drain()
        flood_done.set()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(directory / "call.sock"))
    attached = FakeAttached()
    for _ in range(160):  # 10 MiB of stray output
        attached.frames.put_nowait((STDOUT, chunk))
    channel = SocketChannel(attached, directory)
    try:
        await channel.connect(timeout=5)
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert channel._queued < 4 << 20  # both sources stopped near the 1 MiB mark
        assert not flood_done.is_set()
        got = 0
        while got < 2 * 160 * len(chunk):  # reading drains both, and they go on to the end
            item = await asyncio.wait_for(channel.read(), 10)
            assert item is not None
            got += len(item[1])
        assert got == 2 * 160 * len(chunk)
        await asyncio.wait_for(flood_done.wait(), 10)
    finally:
        await channel.close()
        server.close()
        await server.wait_closed()
