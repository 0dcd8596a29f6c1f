"""One lifecycle shape for every long-running service.

A service is a :class:`Lifecycle`: ``async with Service(settings) as svc``, idempotent
``start``/``stop``. Its ``_start`` says how to release each thing right after acquiring it
(``self.on_stop(step, release)``); ``stop`` runs those steps in reverse order, each one
whatever the others did. Acquiring clients first and intake last makes every stop the same
sequence: stop intake, drain in-flight work up to a grace period, cancel the rest, close
clients.

A service owns a :class:`TaskSet` of named side tasks. If one of them dies with an
exception the service is marked failed, loudly, and ``__main__`` stops it with a non-zero
exit code. Signals are handled only in :func:`run_service`, called from ``__main__``.
"""

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

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

    async def drain(self, grace_s: float) -> None:
        """A stop's in-flight step: the tasks get ``grace_s`` to end by themselves, then the
        rest are cancelled."""
        if not await self.wait_all(grace_s):
            log.warning("lifecycle.cancelling", extra=fields(tasks=self.owner, count=len(self)))
            await self.cancel_all()


# How to release one thing: a coroutine function, or a plain function for what is synchronous.
Release = Callable[[], Awaitable[object] | None]


class Teardown:
    """What a service holds, released in reverse order of acquisition: an ``AsyncExitStack``
    whose steps have names, are logged, and do not stop each other.

    ``close()`` runs every step once, last pushed first. A step that raises is logged with
    its traceback (``lifecycle.step_failed``) and the next step runs all the same: a NATS
    drain that fails must not leave the database or the Docker client open. Once every step
    has run, the first error is raised again, so that the caller knows its stop was not
    clean (``run_until_stopped`` turns that into exit code 1); a cancellation is raised in
    preference, since whoever cancelled is waiting for it.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._steps: list[tuple[str, Release]] = []

    def push(self, step: str, release: Release) -> None:
        self._steps.append((step, release))

    def __len__(self) -> int:
        return len(self._steps)

    async def close(self) -> None:
        error: BaseException | None = None
        while self._steps:
            step, release = self._steps.pop()
            started = time.monotonic()
            try:
                result = release()
                if inspect.isawaitable(result):
                    await result
            except Exception as err:
                log.error("lifecycle.step_failed", exc_info=True, extra=fields(service=self.service, step=step))
                error = error or err
            except BaseException as err:  # cancelled: the steps left still release what they hold
                log.warning("lifecycle.step_cancelled", extra=fields(service=self.service, step=step, error=repr(err)))
                if error is None or isinstance(error, Exception):
                    error = err
            else:
                ms = round((time.monotonic() - started) * 1000, 1)
                log.info("lifecycle.step", extra=fields(service=self.service, step=step, ms=ms))
        if error is not None:
            raise error


class Lifecycle:
    """The base of every long-running service: idempotent ``start``/``stop``, ``async with``.

    A subclass implements ``_start``; right after it acquires each resource (a client, a
    subscription, a pool) or starts each intake, it registers how to undo that with
    :meth:`on_stop`. ``stop`` runs the registered steps in reverse order (:class:`Teardown`).
    A ``start`` that fails part-way releases what it had acquired the same way, then raises.

    The order of acquisition is the order of the stop, backwards. Every service acquires
    in the same order, so that every stop reads the same:

    1. clients (NATS, the database, Docker)                 -> closed last
    2. ``on_stop("in-flight", tasks.drain(grace))``         -> in-flight work: grace, cancel
    3. intake (subscriptions, HTTP, pull loops)             -> stopped first

    A stopped service does not start again: make a new one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._teardown = Teardown(name)
        self._lifecycle_lock = asyncio.Lock()
        self._phase: Literal["new", "started", "stopped"] = "new"

    async def _start(self) -> None:
        """Acquire and start everything, calling :meth:`on_stop` after each acquisition."""
        raise NotImplementedError

    def on_stop(self, step: str, release: Release) -> None:
        """At stop (or a failed start), ``release()`` runs as step ``step``, before the steps
        registered earlier."""
        self._teardown.push(step, release)

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called or ``start()`` failed."""
        return self._phase == "stopped"

    async def start(self) -> None:
        """Idempotent; a start that fails releases what it had acquired, then raises."""
        async with self._lifecycle_lock:
            if self._phase == "stopped":
                raise RuntimeError(f"a stopped {self.name} cannot start again: make a new one")
            if self._phase == "started":
                return
            self._phase = "started"
            try:
                await self._start()
            except BaseException as err:
                self._phase = "stopped"
                log.warning(
                    "lifecycle.start_failed",
                    extra=fields(service=self.name, error=repr(err), release=len(self._teardown)),
                )
                # What went wrong is the start's error: a release that fails too is logged.
                with contextlib.suppress(Exception):
                    await self._teardown.close()
                raise

    async def stop(self) -> None:
        """Idempotent: runs the registered steps once, last registered first. Raises the
        first error of a step once all of them ran (see :class:`Teardown`)."""
        async with self._lifecycle_lock:
            was, self._phase = self._phase, "stopped"
            if was != "started":
                return
            started = time.monotonic()
            try:
                await self._teardown.close()
            finally:
                ms = round((time.monotonic() - started) * 1000, 1)
                log.info("lifecycle.stopped", extra=fields(service=self.name, ms=ms))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


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
    """Start, wait for a stop request or a failed side task, stop. Returns the exit code:
    1 if a side task failed or a step of the stop did (that step's error is in the log).

    A stop asked for while the service is still starting (e.g. waiting for NATS or for the
    layout) cancels the start, which releases what it had acquired: a service whose start
    can wait for ever still stops on SIGTERM (systemd would otherwise kill it)."""
    stop_wait = asyncio.create_task(stop.wait(), name="stop-requested")
    starting = asyncio.create_task(service.start(), name="start")
    try:
        await asyncio.wait({stop_wait, starting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("service.stopped_while_starting", extra=fields(service=service.name))
            return 0
        starting.result()  # a failed start raises here
    finally:
        if not starting.done():  # run_until_stopped itself was cancelled
            starting.cancel()
        if not stop_wait.done():
            stop_wait.cancel()
    clean_stop = False
    try:
        stop_wait = asyncio.create_task(stop.wait(), name="stop-requested")
        fail_wait = asyncio.create_task(service.tasks.failed.wait(), name="task-failed")
        await asyncio.wait({stop_wait, fail_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        fail_wait.cancel()
    finally:
        try:
            await service.stop()
            clean_stop = True
        except Exception:
            pass  # logged with its traceback by the step that raised (lifecycle.step_failed)
    if service.tasks.failure is not None:
        log.error("service.failed", extra=fields(service=service.name, error=repr(service.tasks.failure)))
        return 1
    return 0 if clean_stop else 1


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
