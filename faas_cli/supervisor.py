"""Keeps ``faas up``'s processes running: restarts what dies, with a bounded backoff, and
stops everything in the reverse order of its start.

A :class:`Child` is one process the supervisor can start, wait for and stop (a service,
nats-server: faas_cli/children.py). Each started child has a watch task: when the process
exits by itself it logs ``platform.child_died`` (exit code or signal, how long it ran),
waits the backoff, starts it again and logs ``platform.child_restarted`` with the downtime.
The backoff doubles with each death in a row, up to a ceiling; a child that ran for
``healthy_s`` before it died starts over from the first delay. A restart that fails counts
as one more death in a row.

``stop`` stops restarting first, then stops the children last started first, each with
SIGTERM and its grace (then SIGKILL); ``hurry`` (a second Ctrl-C) cuts the graces short:
what is still running is killed. A watch task that fails (a bug, not a death) sets
``failed``: ``faas up`` then stops everything rather than go on unsupervised.
"""

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from common.lifecycle import wait_event
from common.logs import fields

log = logging.getLogger("faas.up")


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a child after ``deaths`` deaths in a row (1 = the first)."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 15.0
    # A child that ran this long before it died was healthy: its next delay is first_s.
    healthy_s: float = 30.0

    def __post_init__(self) -> None:
        if not (0 <= self.first_s <= self.max_s) or self.factor < 1 or self.healthy_s <= 0:
            raise ValueError(f"an inconsistent restart backoff: {self}")

    def delay(self, deaths: int) -> float:
        return float(min(self.first_s * self.factor ** max(deaths - 1, 0), self.max_s))


class Child(Protocol):
    """One supervised process; ``start`` again after it exited starts a new one."""

    name: str

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> None:
        """Start the process; return once it is up (raise if it cannot start)."""

    async def wait(self) -> int:
        """Until the process last started exits: its exit code (negative: a signal)."""

    async def stop(self, grace: float, hurry: asyncio.Event) -> None:
        """SIGTERM, up to ``grace`` seconds (less once ``hurry`` is set), then SIGKILL; a
        no-op if it is not running."""


def describe_exit(code: int) -> dict[str, object]:
    """``code=3`` or ``signal=SIGKILL``, as asyncio reports an exit."""
    if code < 0:
        try:
            return {"signal": signal.Signals(-code).name}
        except ValueError:
            return {"signal": -code}
    return {"code": code}


@dataclass
class _Watched:
    child: Child
    grace_s: float
    started_at: float
    pid: int | None  # of the process started last: gone by the time it is reported dead
    deaths: int = 0  # in a row: reset by a healthy run
    restarts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Supervisor:
    """``await sup.start(child, grace_s)`` for each child in order, ``await sup.stop()``."""

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self._clock = clock
        self.failed = asyncio.Event()
        self._watched: list[_Watched] = []
        self._watchers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()

    def pids(self) -> dict[str, int]:
        """The running children's pids by name."""
        return {w.child.name: pid for w in self._watched if (pid := w.child.pid) is not None}

    def restarts(self) -> dict[str, int]:
        return {w.child.name: w.restarts for w in self._watched}

    async def start(self, child: Child, grace_s: float) -> None:
        """Start ``child`` (an error is the caller's: nothing is watched) and watch it."""
        if self._stopping.is_set():
            raise RuntimeError("the supervisor is stopping")
        await child.start()
        log.info("platform.child_started", extra=fields(service=child.name, pid=child.pid))
        watched = _Watched(child, grace_s, self._clock(), child.pid)
        self._watched.append(watched)
        task = asyncio.create_task(self._watch(watched), name=f"supervise:{child.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watcher_done)

    def _watcher_done(self, task: asyncio.Task[None]) -> None:
        self._watchers.discard(task)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.error("platform.supervision_failed", exc_info=err, extra=fields(task=task.get_name()))
            self.failed.set()

    async def _watch(self, w: _Watched) -> None:
        while True:
            code = await w.child.wait()
            if self._stopping.is_set():
                return
            died = self._clock()
            ran_s = died - w.started_at
            w.deaths = 1 if ran_s >= self.backoff.healthy_s else w.deaths + 1
            delay = self.backoff.delay(w.deaths)
            log.error(
                "platform.child_died",
                extra=fields(
                    service=w.child.name, pid=w.pid, **describe_exit(code), ran_s=round(ran_s, 1), retry_in_s=delay
                ),
            )
            if not await self._restart(w, delay):
                return
            w.restarts += 1
            w.started_at = self._clock()
            w.pid = w.child.pid
            log.info(
                "platform.child_restarted",
                extra=fields(
                    service=w.child.name,
                    pid=w.pid,
                    downtime_s=round(w.started_at - died, 3),
                    restarts=w.restarts,
                ),
            )

    async def _restart(self, w: _Watched, delay: float) -> bool:
        """Wait ``delay``, start the child again, retrying with backoff; False if stopping."""
        while True:
            if await wait_event(self._stopping, delay):
                return False
            async with w.lock:  # stop() takes it too: no start behind its back
                if self._stopping.is_set():
                    return False
                try:
                    await w.child.start()
                    return True
                except Exception as err:
                    w.deaths += 1
                    delay = self.backoff.delay(w.deaths)
                    log.error(
                        "platform.restart_failed",
                        extra=fields(service=w.child.name, error=repr(err), retry_in_s=delay),
                    )

    def hurry(self) -> None:
        """The stop under way (or the next) kills what does not exit at once."""
        self._hurry.set()

    async def stop(self) -> None:
        """No more restarts; stop the children, last started first; wait for the watchers."""
        self._stopping.set()
        for w in reversed(self._watched):
            async with w.lock:
                started = self._clock()
                await w.child.stop(w.grace_s, self._hurry)
                log.info(
                    "platform.child_stopped",
                    extra=fields(service=w.child.name, ms=round((self._clock() - started) * 1000, 1)),
                )
        await asyncio.gather(*self._watchers, return_exceptions=True)
