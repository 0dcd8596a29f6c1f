"""The lifecycle skeleton (common/lifecycle.py): the steps a service registers as it acquires
things run in reverse order at stop, each one whatever the others did; a start that fails
part-way releases what it had; start and stop are idempotent. Every test ends within
``DEADLINE_S`` and waits on events, never on a fixed sleep."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest

from common.lifecycle import Lifecycle, TaskSet, Teardown, run_until_stopped

DEADLINE_S = 2.0


@asynccontextmanager
async def deadline() -> AsyncIterator[None]:
    async with asyncio.timeout(DEADLINE_S):
        yield


class Boom(Exception):
    pass


class Fake(Lifecycle):
    """Acquires ``names`` in order, registering each one's release; ``fail_at`` raises
    instead of acquiring that one, ``hang_at`` waits there for ever (until cancelled), and
    the releases of ``broken`` raise."""

    def __init__(
        self, names: list[str], fail_at: str | None = None, hang_at: str | None = None, broken: str | None = None
    ) -> None:
        super().__init__("fake")
        self.tasks = TaskSet(self.name)
        self.names = names
        self.fail_at = fail_at
        self.hang_at = hang_at
        self.broken = broken
        self.acquired: list[str] = []
        self.released: list[str] = []
        self.hanging = asyncio.Event()

    async def _start(self) -> None:
        for name in self.names:
            if name == self.fail_at:
                raise Boom(name)
            if name == self.hang_at:
                self.hanging.set()
                await asyncio.Event().wait()
            self.acquired.append(name)
            self.on_stop(name, partial(self._release, name))

    def _release(self, name: str) -> None:
        self.released.append(name)
        if name == self.broken:
            raise OSError(f"{name}: connection lost")


async def test_steps_run_in_reverse_order_of_registration() -> None:
    ran: list[str] = []
    teardown = Teardown("svc")
    for name in ("nats", "database", "in-flight", "intake"):
        teardown.push(name, partial(ran.append, name))
    async with deadline():
        await teardown.close()
    assert ran == ["intake", "in-flight", "database", "nats"]


async def test_a_failing_step_does_not_skip_the_ones_after_it(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    async def fails(name: str) -> None:
        ran.append(name)
        raise Boom(name)

    teardown = Teardown("svc")
    teardown.push("docker", lambda: ran.append("docker"))
    teardown.push("nats", lambda: fails("nats"))
    teardown.push("pools", lambda: fails("pools"))
    teardown.push("intake", lambda: ran.append("intake"))
    async with deadline():
        # Every step ran; the first error is raised once they all did.
        with pytest.raises(Boom, match="pools"):
            await teardown.close()
    assert ran == ["intake", "pools", "nats", "docker"]
    failed = [r for r in caplog.records if r.getMessage() == "lifecycle.step_failed"]
    assert [r.fields["step"] for r in failed] == ["pools", "nats"]  # type: ignore[attr-defined]
    assert all(r.exc_info for r in failed)  # logged with the traceback
    assert len(teardown) == 0


async def test_a_stop_cancelled_mid_step_still_runs_the_later_steps() -> None:
    ran: list[str] = []
    in_drain = asyncio.Event()

    async def drain() -> None:
        in_drain.set()
        await asyncio.Event().wait()

    teardown = Teardown("svc")
    teardown.push("nats", lambda: ran.append("nats"))
    teardown.push("in-flight", drain)
    async with deadline():
        closing = asyncio.create_task(teardown.close())
        await in_drain.wait()
        closing.cancel()
        # The cancellation is not swallowed: it is raised once the later steps ran.
        with pytest.raises(asyncio.CancelledError):
            await closing
    assert ran == ["nats"]


async def test_a_start_that_fails_part_way_releases_what_it_acquired() -> None:
    svc = Fake(["nats", "database", "subscription", "http"], fail_at="subscription")
    async with deadline():
        with pytest.raises(Boom):
            await svc.start()
    assert svc.acquired == ["nats", "database"]
    assert svc.released == ["database", "nats"]
    assert svc.stopped
    with pytest.raises(RuntimeError, match="cannot start again"):
        await svc.start()
    await svc.stop()  # nothing left to release
    assert svc.released == ["database", "nats"]


async def test_a_start_cancelled_part_way_releases_what_it_acquired() -> None:
    svc = Fake(["nats", "database", "http"], hang_at="http")
    async with deadline():
        starting = asyncio.create_task(svc.start())
        await svc.hanging.wait()
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
    assert svc.released == ["database", "nats"]


async def test_a_release_that_fails_during_a_failed_start_leaves_the_start_error() -> None:
    svc = Fake(["nats", "database", "http"], fail_at="http", broken="database")
    async with deadline():
        with pytest.raises(Boom):
            await svc.start()
    assert svc.released == ["database", "nats"]


async def test_stop_is_idempotent() -> None:
    svc = Fake(["nats", "http"])
    async with deadline():
        await svc.start()
        await svc.start()  # idempotent
        assert svc.acquired == ["nats", "http"]
        await asyncio.gather(svc.stop(), svc.stop())  # concurrent stops: one runs the steps
        await svc.stop()
    assert svc.released == ["http", "nats"]


async def test_a_second_stop_waits_for_the_first_and_releases_nothing_again() -> None:
    svc = Fake(["nats", "http"])
    in_step, go_on = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        in_step.set()
        await go_on.wait()
        svc.released.append("slow")

    async with deadline():
        await svc.start()
        svc.on_stop("slow", slow)
        first = asyncio.create_task(svc.stop())
        await in_step.wait()
        second = asyncio.create_task(svc.stop())
        for _ in range(5):  # a few turns of the loop: the second stop is waiting, not done
            await asyncio.sleep(0)
        assert not second.done() and svc.released == []
        go_on.set()
        await asyncio.gather(first, second)
    assert svc.released == ["slow", "http", "nats"]


async def test_stop_before_start_releases_nothing_and_forbids_a_start() -> None:
    svc = Fake(["nats"])
    async with deadline():
        await svc.stop()
        with pytest.raises(RuntimeError):
            await svc.start()
    assert svc.acquired == [] and svc.released == []


async def test_async_with_starts_and_stops_even_on_error() -> None:
    svc = Fake(["nats", "http"])
    async with deadline():
        with pytest.raises(Boom):
            async with svc as running:
                assert running is svc and svc.acquired == ["nats", "http"]
                raise Boom("in the body")
    assert svc.released == ["http", "nats"]


async def test_stop_raises_the_first_failing_step_after_running_them_all() -> None:
    svc = Fake(["nats", "http"])

    def pools_fail() -> None:
        raise Boom("pools")

    async with deadline():
        await svc.start()
        svc.on_stop("pools", pools_fail)
        with pytest.raises(Boom, match="pools"):
            await svc.stop()
        await svc.stop()  # idempotent after a failure too
    assert svc.released == ["http", "nats"]


async def test_run_until_stopped_exits_1_when_a_step_of_the_stop_fails() -> None:
    svc = Fake(["nats"])

    async def fails() -> None:
        raise Boom("drain")

    stop = asyncio.Event()
    stop.set()
    async with deadline():
        await svc.start()
        svc.on_stop("drain", fails)
        assert await run_until_stopped(svc, stop) == 1
    assert svc.released == ["nats"]


async def test_run_until_stopped_ends_a_start_that_waits_for_ever_when_asked_to_stop() -> None:
    """SIGTERM while a service waits in its start (for NATS, for the layout): it stops, and
    releases what it had, instead of waiting until systemd kills it."""
    svc = Fake(["nats", "layout", "intake"], hang_at="layout")
    stop = asyncio.Event()
    async with deadline():
        running = asyncio.create_task(run_until_stopped(svc, stop))
        await svc.hanging.wait()
        stop.set()
        assert await running == 0
    assert svc.acquired == ["nats"] and svc.released == ["nats"]


async def test_run_until_stopped_raises_a_failed_start() -> None:
    svc = Fake(["nats", "layout"], fail_at="layout")
    async with deadline():
        with pytest.raises(Boom):
            await run_until_stopped(svc, asyncio.Event())
    assert svc.released == ["nats"]


async def test_drain_waits_for_tasks_up_to_the_grace_then_cancels_the_rest() -> None:
    tasks = TaskSet("svc")
    finish = asyncio.Event()
    quick_done = asyncio.Event()

    async def quick() -> None:
        await finish.wait()
        quick_done.set()

    tasks.spawn(quick(), "quick")
    stuck = tasks.spawn(asyncio.Event().wait(), "stuck")
    finish.set()
    async with deadline():
        await tasks.drain(0.05)
    assert quick_done.is_set()  # ended by itself within the grace period
    assert stuck.cancelled()
    assert len(tasks) == 0
