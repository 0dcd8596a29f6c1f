"""The containers of the fake Docker engine (tests/fakes/docker.py): each one's files, state,
stdin and output, and the :class:`Process` its program runs as.

A *program* is an async function of a :class:`Process` (command, environment, working
directory, files, stdin) that writes stdout and stderr and returns the exit code (or raises
:class:`Exit`). Output reaches attach streams as Docker's does, ``(stream, bytes)`` frames
(1 = stdout, 2 = stderr), with a pipe's backpressure, and the engine's log if the container
keeps logs.
"""

import asyncio
import io
import posixpath
import tarfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

from node_agent.containers.config import ContainerSpec
from node_agent.errors import StreamClosed

STDOUT, STDERR = 1, 2
# Output an attach stream holds unread before the container's writes block (a pipe's buffer).
PIPE_BYTES = 1 << 20
# The exit code of a process killed by SIGKILL (a remove, the memory limit).
KILLED = 137


class Signal:
    """One condition for every state change of the fake: waiters re-check what they wait for."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def until(self, predicate: Callable[[], object]) -> None:
        while not predicate():
            await self._event.wait()


class Exit(Exception):
    """Ends the container's process with ``code`` from anywhere in its program."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exit {code}")
        self.code = code


class FakeAttached:
    """An attach stream (the ``Attached`` Protocol): output frames to read, stdin to write.

    Made by :meth:`FakeEngine.attach` it is a container's: its process's output from then on,
    and writes go to its stdin. Standalone (``FakeAttached()``) the test plays the container:
    ``feed`` frames, ``end`` the stream, and read what the agent wrote in ``written``."""

    def __init__(self, signal: Signal | None = None, stdin: Callable[[bytes], None] | None = None) -> None:
        self._signal = signal or Signal()
        self._stdin = stdin
        self._frames: deque[tuple[int, bytes] | None] = deque()
        self.pending = 0  # output bytes fed and not read yet
        self.written = bytearray()
        self.closed = False

    def feed(self, stream: int, data: bytes) -> None:
        self._frames.append((stream, data))
        self.pending += len(data)
        self._signal.notify()

    def end(self) -> None:
        """The end of the stream: the container's process exited."""
        self._frames.append(None)
        self._signal.notify()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise StreamClosed("the attach stream is closed")
        if self._stdin is not None:
            self._stdin(data)
        self.written += data
        await asyncio.sleep(0)

    async def read(self) -> tuple[int, bytes] | None:
        await self._signal.until(lambda: self.closed or self._frames)
        frame = None if self.closed else self._frames[0]
        if frame is None:
            return None  # and stays ended
        self._frames.popleft()
        stream, data = frame
        self.pending -= len(data)
        self._signal.notify()
        return stream, data

    async def close(self) -> None:
        self.closed = True
        self._signal.notify()


class FakeContainer:
    """One container: its spec, filesystem, state, stdin and output."""

    def __init__(self, cid: str, spec: ContainerSpec, job: bool, signal: Signal) -> None:
        self.cid = cid
        self.spec = spec
        self.job = job  # made by create_job
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.owners: dict[str, tuple[int, int]] = {}  # (uid, gid) of what put_archive copied in
        self.dirs: set[str] = {"/"}
        self.state = "created"  # created | running | exited | removed
        self.exit_code: int | None = None
        self.oom_killed = False
        self.stdin_bytes = bytearray()  # everything written to its stdin
        self.log: list[tuple[int, bytes]] = []  # the engine's log (spec.keep_logs only)
        self.written = {STDOUT: 0, STDERR: 0}  # output bytes, kept or not
        self.attachments: list[FakeAttached] = []
        self.task: asyncio.Task[None] | None = None
        self._signal = signal
        self._stdin = asyncio.StreamReader()
        if not spec.stdin:
            self._stdin.feed_eof()

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.labels

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def unpack(self, path: str, tar: bytes) -> None:
        """What ``put_archive`` does: the tar's members under ``path``, parents created."""
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            for m in tf.getmembers():
                target = posixpath.normpath(posixpath.join(path, m.name))
                self._mkdirs(posixpath.dirname(target))
                self.owners[target] = (m.uid, m.gid)
                if m.isdir():
                    self.dirs.add(target)
                elif m.isfile():
                    f = tf.extractfile(m)
                    self.files[target] = f.read() if f else b""
                    self.modes[target] = m.mode

    def _mkdirs(self, path: str) -> None:
        while path not in self.dirs:
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def close_stdin(self) -> None:
        """What the process reads next is EOF (Docker closes it only with StdinOnce)."""
        self._stdin.feed_eof()

    def write_stdin(self, data: bytes) -> None:
        if self.exit_code is not None:
            raise StreamClosed("the container's stdin is closed: its process exited")
        if not self.spec.stdin:
            raise StreamClosed("the container's stdin is not open (ContainerSpec.stdin)")
        self.stdin_bytes += data
        self._stdin.feed_data(data)

    def output(self, stream: int, data: bytes) -> None:
        """Output of its process: to the log and to every open attach stream."""
        self.written[stream] += len(data)
        if self.spec.keep_logs:
            self.log.append((stream, data))
        for a in self.attachments:
            if not a.closed:
                a.feed(stream, data)
        self._signal.notify()

    async def emit(self, stream: int, data: bytes) -> None:
        """:meth:`output`, blocking while an attach stream holds more than a pipe's worth unread."""
        if not data:
            return
        self.output(stream, data)
        await self._signal.until(lambda: all(a.closed or a.pending <= PIPE_BYTES for a in self.attachments))
        await asyncio.sleep(0)  # a flood lets the rest of the loop run

    def exited(self, code: int) -> None:
        """The process ended (by itself, or killed): attach streams end, ``wait`` returns."""
        if self.exit_code is not None:
            return
        self.exit_code = code
        if self.state == "running":
            self.state = "exited"
        for a in self.attachments:
            a.end()
        self._signal.notify()


class Process:
    """A process of a fake container, as its program sees it. ``child`` makes the process a
    script ``exec``s: other command, environment, directory, stdin (``< file``) or stdout."""

    def __init__(
        self,
        container: FakeContainer,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        stdin: asyncio.StreamReader,
        stdout: int = STDOUT,
    ) -> None:
        self.container = container
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self._stdin = stdin
        self._stdout = stdout

    @property
    def files(self) -> dict[str, bytes]:
        return self.container.files

    def path(self, name: str) -> str:
        return posixpath.normpath(posixpath.join(self.cwd, name))

    def file(self, name: str) -> bytes:
        """A file's content (relative to the working directory); a missing one is an error."""
        return self.container.files[self.path(name)]

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of stdin (all of it, to EOF, by default)."""
        return await self._stdin.read(n)

    async def readline(self) -> bytes:
        return await self._stdin.readline()

    async def out(self, data: bytes) -> None:
        await self.container.emit(self._stdout, data)

    async def err(self, data: bytes) -> None:
        await self.container.emit(STDERR, data)

    def oom_kill(self) -> NoReturn:
        """The kernel kills the container's process at its memory limit."""
        self.container.oom_killed = True
        raise Exit(KILLED)

    async def hang(self) -> NoReturn:
        """Never ends by itself (until the container is removed)."""
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def child(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        stdout: int | None = None,
    ) -> "Process":
        reader = self._stdin
        if stdin is not None:
            reader = asyncio.StreamReader()
            reader.feed_data(stdin)
            reader.feed_eof()
        return Process(
            self.container,
            argv,
            dict(self.env if env is None else env),
            self.cwd if cwd is None else cwd,
            reader,
            self._stdout if stdout is None else stdout,
        )


Program = Callable[[Process], Awaitable[int]]


def emits(frames: Iterable[tuple[int, bytes]], exit_code: int = 0, forever: bool = False) -> Program:
    """A program that writes ``frames`` (stream, bytes), then exits with ``exit_code`` or,
    ``forever``, runs until the container is removed."""
    frames = list(frames)

    async def program(p: Process) -> int:
        for stream, data in frames:
            await (p.out(data) if stream == STDOUT else p.err(data))
        if forever:
            await p.hang()
        return exit_code

    return program
