"""``faas up`` as a person runs it: ``python -m faas_cli up`` in a session of its own (a
shell's foreground job: Ctrl-C is ``killpg(its pid, SIGINT)``), on free ports, in a data dir
of its own, its whole output in ``<data>/up.log``; and the processes it started, found by
their parent pid in /proc (Linux). Used by the soak (bench/soak.py) and the fault suite
(tests/faults/)."""

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path

import aiohttp

from bench.platform import free_port

SERVICES = ("nats-server", "store", "gateway", "node-agent")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = text.rsplit(")", 1)[1].split()
    return rest[0], int(rest[1]), int(rest[19])


def _name(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    if Path(argv[0].decode()).name == "nats-server":
        return "nats-server"
    if len(argv) > 2 and argv[1] == b"-m":
        return argv[2].decode().replace("_", "-")
    return None


class Proc:
    """One process, told apart from a later one that reuses its pid."""

    def __init__(self, pid: int) -> None:
        stat = _stat(pid)
        assert stat is not None, f"no process {pid}"
        self.pid, self.started = pid, stat[2]

    def alive(self) -> bool:
        stat = _stat(self.pid)
        return stat is not None and stat[2] == self.started and stat[0] != "Z"

    def __repr__(self) -> str:
        return f"Proc({self.pid})"


def children_of(parent: int) -> dict[str, Proc]:
    """The processes ``parent`` started, by service name."""
    found: dict[str, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != parent or stat[0] == "Z":
            continue
        name = _name(int(entry.name))
        if name is not None:
            found[name] = Proc(int(entry.name))
    return found


class UpProcess:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            # A node id of its own: an agent removes every container of its node id at start.
            "FAAS_AGENT_NODE_ID": "up-" + secrets.token_hex(4),
            **(env or {}),
        }
        self.log_path = data_dir / "up.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, timeout: float = 90.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "faas_cli",
                "--data-dir",
                str(self.data),
                "up",
                "--port",
                str(self.port),
                "--nats-port",
                "0",
                "--nats-monitor-port",
                "0",
                "--agent-metrics-port",
                "0",
                "--store-metrics-port",
                "0",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while "platform.ready" not in self.log():
            if self.proc.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"faas up did not get ready:\n{self.log()[-4000:]}")
            await asyncio.sleep(0.1)

    @property
    def headers(self) -> dict[str, str]:
        """The admin token faas up wrote, as a bearer header."""
        return {"Authorization": f"Bearer {(self.data / 'admin.token').read_text().strip()}"}

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(self.url, headers=self.headers)

    def children(self) -> dict[str, Proc]:
        return children_of(self.pid)

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to the foreground process group."""
        os.killpg(self.pid, signal.SIGINT)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def close(self) -> None:
        """Whatever the test did: faas up and everything it started are gone after this."""
        if self.proc is None:
            return
        left = list(self.children().values())
        if self.proc.returncode is None:
            self.ctrl_c()
            try:
                await self.wait_exit(60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for proc in left:
            if proc.alive():
                os.kill(proc.pid, signal.SIGKILL)


async def gone(procs: list[Proc], timeout: float) -> float:
    """Seconds until every one of ``procs`` is gone; fails after ``timeout``."""
    started = time.monotonic()
    while any(p.alive() for p in procs):
        if time.monotonic() - started > timeout:
            raise AssertionError(f"still running after {timeout}s: {[p for p in procs if p.alive()]}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started
