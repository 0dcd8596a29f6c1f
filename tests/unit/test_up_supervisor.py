"""faas up's supervisor with processes that are futures: restarts, backoff, stop order."""

import asyncio
import logging
from typing import Any

import pytest

from faas_cli.supervisor import Backoff, Supervisor, describe_exit

FAST = Backoff(first_s=0.01, factor=2.0, max_s=0.04, healthy_s=10.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeChild:
    """A process whose exit the test decides: ``die(code)``; ``stop`` exits it with -15."""

    def __init__(self, name: str, journal: list[str], fail_starts: int = 0) -> None:
        self.name = name
        self.journal = journal
        self.fail_starts = fail_starts
        self.starts = 0
        self._exit: asyncio.Future[int] | None = None
        self.started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return 100 + self.starts if self._exit is not None and not self._exit.done() else None

    async def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise OSError("cannot start")
        self.starts += 1
        self._exit = asyncio.get_running_loop().create_future()
        self.journal.append(f"start {self.name}")
        self.started.set()

    async def wait(self) -> int:
        assert self._exit is not None
        return await asyncio.shield(self._exit)

    def die(self, code: int) -> None:
        assert self._exit is not None and not self._exit.done()
        self.started.clear()
        self._exit.set_result(code)

    async def stop(self, grace: float, hurry: asyncio.Event) -> None:
        self.journal.append(f"stop {self.name}")
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(-15)


class Stubborn(FakeChild):
    """Takes its whole grace to stop (an agent waiting for its calls), unless hurried."""

    async def stop(self, grace: float, hurry: asyncio.Event) -> None:
        self.journal.append(f"stop {self.name}")
        try:
            async with asyncio.timeout(grace):
                await hurry.wait()
            self.journal.append(f"kill {self.name}")
        except TimeoutError:
            pass
        assert self._exit is not None
        self._exit.set_result(-9)


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == name]  # type: ignore[attr-defined]


def test_backoff_doubles_up_to_its_ceiling() -> None:
    b = Backoff(first_s=0.5, factor=2.0, max_s=15.0)
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    with pytest.raises(ValueError):
        Backoff(first_s=20.0, max_s=15.0)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


def test_an_exit_says_its_code_or_its_signal() -> None:
    assert describe_exit(3) == {"code": 3}
    assert describe_exit(-9) == {"signal": "SIGKILL"}


async def test_a_child_that_dies_is_started_again_and_both_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "faas.up")
    journal: list[str] = []
    child = FakeChild("store", journal)
    sup = Supervisor(FAST)
    await sup.start(child, grace_s=1)
    child.die(-9)
    await asyncio.wait_for(child.started.wait(), 5)
    assert child.starts == 2 and sup.restarts() == {"store": 1}
    await asyncio.sleep(0)  # the restart's log line follows the start
    died = _events(caplog, "platform.child_died")
    assert died == [
        {"service": "store", "pid": 101, "signal": "SIGKILL", "ran_s": pytest.approx(0, abs=1), "retry_in_s": 0.01}
    ]
    (restarted,) = _events(caplog, "platform.child_restarted")
    assert restarted["service"] == "store" and restarted["pid"] == 102 and restarted["restarts"] == 1
    assert restarted["downtime_s"] >= 0
    await sup.stop()
    assert journal == ["start store", "start store", "stop store"]


async def test_deaths_in_a_row_back_off_and_a_healthy_run_starts_over(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "faas.up")
    clock = FakeClock()
    child = FakeChild("gateway", [])
    sup = Supervisor(FAST, clock=clock)
    await sup.start(child, grace_s=1)
    for _ in range(4):  # dies at once, four times in a row
        child.die(1)
        await asyncio.wait_for(child.started.wait(), 5)
    clock.now += FAST.healthy_s  # then runs a healthy while
    child.die(1)
    await asyncio.wait_for(child.started.wait(), 5)
    await sup.stop()
    assert [e["retry_in_s"] for e in _events(caplog, "platform.child_died")] == [0.01, 0.02, 0.04, 0.04, 0.01]
    assert [e["code"] for e in _events(caplog, "platform.child_died")] == [1] * 5


async def test_a_failed_restart_is_retried_with_more_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "faas.up")
    child = FakeChild("nats-server", [])
    sup = Supervisor(FAST)
    await sup.start(child, grace_s=1)
    child.fail_starts = 2
    child.die(-9)
    await asyncio.wait_for(child.started.wait(), 5)
    await sup.stop()
    failed = _events(caplog, "platform.restart_failed")
    assert [f["retry_in_s"] for f in failed] == [0.02, 0.04]
    assert all("cannot start" in f["error"] for f in failed)
    assert sup.restarts() == {"nats-server": 1}


async def test_stop_goes_in_reverse_order_and_restarts_nothing() -> None:
    journal: list[str] = []
    children = [FakeChild(name, journal) for name in ("nats-server", "store", "gateway", "node-agent")]
    sup = Supervisor(Backoff(first_s=0.2, max_s=0.2))
    for child in children:
        await sup.start(child, grace_s=1)
    assert sup.pids() == {"nats-server": 101, "store": 101, "gateway": 101, "node-agent": 101}
    children[1].die(-9)  # the store dies; stop comes during its backoff
    await asyncio.sleep(0)
    await sup.stop()
    await asyncio.sleep(0.3)  # past the backoff: nothing is started behind the stop
    assert journal[4:] == ["stop node-agent", "stop gateway", "stop store", "stop nats-server"]
    assert [c.starts for c in children] == [1, 1, 1, 1] and sup.pids() == {}


async def test_a_watch_that_fails_says_so() -> None:
    class Broken(FakeChild):
        async def wait(self) -> int:
            raise RuntimeError("a bug")

    sup = Supervisor(FAST)
    await sup.start(Broken("store", []), grace_s=1)
    await asyncio.wait_for(sup.failed.wait(), 5)
    await sup.stop()


async def test_a_hurry_cuts_the_graces_short() -> None:
    journal: list[str] = []
    sup = Supervisor(FAST)
    await sup.start(FakeChild("store", journal), grace_s=60)
    await sup.start(Stubborn("node-agent", journal), grace_s=60)
    stopping = asyncio.create_task(sup.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done() and journal[-1] == "stop node-agent"
    sup.hurry()  # a second Ctrl-C
    await asyncio.wait_for(stopping, 5)
    assert journal[2:] == ["stop node-agent", "kill node-agent", "stop store"]
