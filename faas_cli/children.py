"""The processes ``faas up`` supervises (faas_cli/supervisor.py): a service run as
``python -m <module>`` and the embedded nats-server.

Each runs in a session of its own, so a terminal's Ctrl-C (SIGINT to the foreground process
group) reaches ``faas up`` alone, which then stops them in order; and each gets SIGTERM if
``faas up`` dies, even by SIGKILL (common/parentdeath.py). A service's output is relayed
to ``faas up``'s stderr, each line prefixed with the service's name.
"""

import asyncio
import logging
import signal
import sys

from common.logs import fields
from common.natsserver import NatsServer
from common.parentdeath import die_with_parent

log = logging.getLogger("faas.up")


class ServiceProcess:
    """``python -m <module>`` with ``env``."""

    def __init__(self, name: str, module: str, env: dict[str, str]) -> None:
        self.name = name
        self.module = module
        self.env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._relay: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            return
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        assert self._proc.stdout is not None
        self._relay = asyncio.create_task(self._relay_output(self._proc.stdout), name=f"output:{self.name}")

    async def _relay_output(self, out: asyncio.StreamReader) -> None:
        while line := await out.readline():
            # sys.stderr at each line: a caller may redirect it (bench/platform.py does).
            sys.stderr.write(f"{self.name:<11} | {line.decode(errors='replace')}")

    async def wait(self) -> int:
        proc, relay = self._proc, self._relay
        if proc is None:
            raise RuntimeError(f"{self.name} was never started")
        code = await proc.wait()
        if relay is not None:
            await relay  # the last lines it wrote before it exited
        return code

    async def stop(self, grace: float, hurry: asyncio.Event) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        exited = asyncio.create_task(proc.wait(), name=f"exit:{self.name}")
        hurried = asyncio.create_task(hurry.wait(), name=f"hurry:{self.name}")
        try:
            await asyncio.wait({exited, hurried}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            exited.cancel()
            raise
        finally:
            hurried.cancel()
        if not exited.done():
            log.warning(
                "platform.kill", extra=fields(service=self.name, pid=proc.pid, grace_s=grace, hurried=hurry.is_set())
            )
            proc.kill()
        await exited


class NatsProcess:
    """The embedded nats-server: a restart keeps its port, store dir, config and passwords."""

    name = "nats-server"

    def __init__(self, server: NatsServer) -> None:
        self.server = server

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server.running else None

    async def start(self) -> None:
        await self.server.start()

    async def wait(self) -> int:
        return await self.server.wait()

    async def stop(self, grace: float, hurry: asyncio.Event) -> None:
        # Last to stop, and quick to: a hurry only takes its grace away if it came already.
        await self.server.stop(0.0 if hurry.is_set() else grace)
