"""One lifecycle shape for every long-running service.

A service owns a :class:`TaskSet` of named side tasks. If one of them dies with an
exception the service is marked failed, loudly, and ``__main__`` stops it with a non-zero
exit code. Signals are handled only in :func:`run_service`, called from ``__main__``.
"""

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from common.logs import fields

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """Named tasks with an owner: a task that fails sets ``failed``; ``cancel_all`` ends them."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, critical: bool = True) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, critical))
        return task

    def _done(self, task: asyncio.Task[Any], critical: bool) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("task.failed", exc_info=exc, extra=fields(task=task.get_name()))
        if critical and self.failure is None:
            self.failure = exc
            self.failed.set()

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_all(self, timeout: float | None = None) -> bool:
        """Wait for every task to end by itself, those spawned meanwhile included (a fill
        that ends spawns the teardown of what it made); True if they all did in time."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            _, pending = await asyncio.wait(set(self._tasks), timeout=left)
            if pending:
                return False
        return True

    async def cancel_all(self) -> None:
        tasks = set(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it is set.

    Loops that wait like this must use it rather than ``asyncio.wait_for(event.wait(), t)``:
    on Python 3.11 ``wait_for`` returns the inner result, swallowing a cancellation, when the
    cancel comes in the same turn as the event (the task then loops on, and whoever cancelled
    it to stop waits for ever). ``asyncio.timeout`` lets the cancellation through."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()


class Service(Protocol):
    name: str
    tasks: TaskSet

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(service: Service, stop: asyncio.Event) -> int:
    """Start, wait for a stop request or a failed side task, stop. Returns the exit code."""
    await service.start()
    try:
        stop_wait = asyncio.create_task(stop.wait(), name="stop-requested")
        fail_wait = asyncio.create_task(service.tasks.failed.wait(), name="task-failed")
        await asyncio.wait({stop_wait, fail_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        fail_wait.cancel()
    finally:
        await service.stop()
    if service.tasks.failure is not None:
        log.error("service.failed", extra=fields(service=service.name, error=repr(service.tasks.failure)))
        return 1
    return 0


def run_service(make: Callable[[], Awaitable[Service]]) -> int:
    """Entry point for ``python -m <service>``: SIGINT/SIGTERM ask for a graceful stop."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service = await make()
        return await run_until_stopped(service, stop)

    return run_loop(main())


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (it is a dependency on Linux and macOS):
    the services spend a large share of their CPU in the event loop's socket and callback work.
    ``FAAS_EVENT_LOOP=asyncio`` keeps the standard loop."""
    if os.environ.get("FAAS_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
