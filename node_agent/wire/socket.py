"""The handler protocol over a Unix socket instead of the container's attached stdio.

Over Docker's attach stream every protocol line passes dockerd and containerd-shim both
ways: six process hops and a multiplexed frame format parsed in Python, which was the
largest single item of the agent's CPU per warm call (docs/benchmarks.md). A warm-function
handler container instead gets a directory of its own bind-mounted at ``/run/faas``; its
shim (``FAAS_SOCKET``) listens on ``/run/faas/call.sock`` and the agent connects to it from
the host: one hop each way.

The container stays attached: what its processes write to fd 1/2 behind the shim's back
(C extensions, subprocesses) still arrives there, and is handed to the session as stderr
output (the shim points fd 1 at stderr, so nothing on the attach stream is protocol).
:class:`SocketChannel` is an :class:`~node_agent.containers.docker.Attached`: the session reading it
does not know which transport it has.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import cast

from common.logs import fields
from node_agent.containers.docker import STDERR, STDOUT, Attached
from node_agent.errors import StreamClosed

log = logging.getLogger(__name__)

MOUNT = "/run/faas"
SOCKET = f"{MOUNT}/call.sock"
_CONNECT_EVERY_S = 0.005

# Output waiting to be read is bounded: above HIGH the channel stops reading the socket and
# the attach stream (the container's writes then block, as with a full pipe), below LOW again
# it reads on. A container printing while idle, or junk written to the socket, cannot grow
# the agent's memory.
_HIGH, _LOW = 1 << 20, 1 << 18

Item = tuple[int, bytes] | None


class _Protocol(asyncio.Protocol):
    def __init__(self, channel: "SocketChannel") -> None:
        self._channel = channel
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._channel._put((STDOUT, data))
        if self._channel.full and self.transport is not None:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._channel._queue.put_nowait(None)


class SocketDir:
    """Where the per-container socket directories live on the host (created on first use).

    A configured root is this node's own. Without one, the root is ``<tmp>/faas-sock-<name>``
    (the node's id): the same on every start, so that what a killed agent left there is swept
    by the next start. If that path exists and is not this user's private directory (another
    user made it first, or a symlink), a fresh private temporary root is used instead."""

    def __init__(self, root: Path | None = None, name: str | None = None) -> None:
        self._root = root
        self._name = name
        self._made: Path | None = None

    def _named(self) -> Path | None:
        """The node's own default root (short on purpose: a Unix socket path has at most
        107 bytes)."""
        return Path(tempfile.gettempdir()) / f"faas-sock-{self._name}" if self._name is not None else None

    def _default(self) -> Path:
        if (path := self._named()) is not None:
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
                return path
            log.warning("agent.socket_root_not_private", extra=fields(path=str(path)))
        return Path(tempfile.mkdtemp(prefix="faas-sock-"))

    def _ensure_root(self) -> Path:
        if self._root is None:
            self._root = self._made = self._default()
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._root

    def new(self) -> Path:
        """A fresh directory for one container, writable by whatever user its shim runs as."""
        path = Path(tempfile.mkdtemp(dir=self._ensure_root()))
        # Writable for the container's user (maybe not this one); other users of the host
        # cannot reach it through the 0700 parent.
        os.chmod(path, 0o777)
        return path

    def sweep(self) -> int:
        """At start, after the containers of an earlier run of this node are removed: their
        directories (left by a killed agent) go too. Creates nothing."""
        if self._root is None and not ((named := self._named()) is not None and named.is_dir()):
            return 0
        root = self._ensure_root()
        stale = [p for p in root.iterdir() if p.is_dir()]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    def cleanup(self) -> None:
        """At stop: a root this class chose goes (a configured one stays)."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)


class SocketChannel:
    """Protocol bytes from the socket, the container's stray output from its attach stream."""

    def __init__(self, attached: Attached, directory: Path, *, read_stray: bool = True) -> None:
        self._attached = attached
        self._dir = directory
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._queued = 0  # bytes in the queue
        self._room = asyncio.Event()  # set while the queue is below _HIGH
        self._room.set()
        self._protocol: _Protocol | None = None
        self._exited = asyncio.Event()
        self._stray: asyncio.Task[None] | None = None
        if read_stray:
            self.read_stray()

    def read_stray(self) -> None:
        """From now on the attach stream is this channel's (a stem cell's is read by others
        until a handler is loaded in it)."""
        if self._stray is None:
            self._stray = asyncio.create_task(self._read_stray(), name="channel:stray-output")

    async def connect(self, timeout: float) -> None:
        """Connect once the shim listens; fails fast if the container's process exits first."""
        loop = asyncio.get_running_loop()
        path = str(self._dir / "call.sock")
        async with asyncio.timeout(timeout):
            while True:
                if self._exited.is_set():
                    raise StreamClosed("the container's process exited before its shim listened")
                try:
                    _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), path)
                except (FileNotFoundError, ConnectionRefusedError):
                    await asyncio.sleep(_CONNECT_EVERY_S)
                    continue
                self._protocol = protocol
                return

    async def _read_stray(self) -> None:
        try:
            while (frame := await self._attached.read()) is not None:
                self._put((STDERR, frame[1]))
                await self._room.wait()
        except Exception:  # the stream broke: the socket tells whether the shim lives
            pass
        finally:
            self._exited.set()

    async def write(self, data: bytes) -> None:
        transport = self._protocol.transport if self._protocol else None
        if transport is None or transport.is_closing():
            raise StreamClosed("the handler's socket is closed")
        transport.write(data)

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    def _put(self, item: tuple[int, bytes]) -> None:
        self._queue.put_nowait(item)
        self._queued += len(item[1])
        if self._queued > _HIGH:
            self._room.clear()

    async def read(self) -> tuple[int, bytes] | None:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later read sees the end too
            return None
        self._queued -= len(item[1])
        if self.full and self._queued < _LOW:
            self._room.set()
            transport = self._protocol.transport if self._protocol else None
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        return item

    def detach(self) -> None:
        """Close the socket and its directory, leaving the attach stream to its other reader
        (a stem cell that runs a command instead of a handler). Only before ``read_stray``."""
        assert self._stray is None, "the attach stream is this channel's already"
        transport = self._protocol.transport if self._protocol else None
        if transport is not None:
            transport.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def close(self) -> None:
        transport = self._protocol.transport if self._protocol else None
        if transport is not None:
            transport.close()
        if self._stray is not None:
            self._stray.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stray
        try:
            await self._attached.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
