"""What makes a NATS outage a pause (common/periodic.py, common/jspub.py): a periodic step that
fails goes on at the next tick, a publish that finds NATS away is tried again within its
patience and raises past it, and an error that is not an outage is raised at once."""

import asyncio
import logging

import nats.errors
import pytest
from nats.js.api import PubAck

from common.jspub import publish_patiently
from common.periodic import every


class Flaky:
    """Fails with ``error`` the first ``failures`` times, then succeeds."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.done = asyncio.Event()

    async def step(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.done.set()

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        await self.step()
        return PubAck(stream=stream or "S", seq=self.calls)


async def test_a_failing_periodic_step_is_tried_again_and_only_a_cancel_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "common.periodic")
    flaky = Flaky(3, nats.errors.TimeoutError())
    task = asyncio.create_task(every(0.001, flaky.step, "beat"))
    async with asyncio.timeout(5):
        await flaky.done.wait()
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = [r.getMessage() for r in caplog.records]
    assert events.count("periodic.failed") == 3 and "periodic.recovered" in events
    # the traceback once per run of failures, not at every tick
    assert [bool(r.exc_info) for r in caplog.records if r.getMessage() == "periodic.failed"] == [
        True,
        False,
        False,
    ]


async def test_a_cancel_swallowed_inside_a_step_still_ends_the_loop() -> None:
    """What nats-py's ``asyncio.wait_for`` does when the cancel meets the reply (Python 3.11):
    the step returns as if never cancelled. The loop must end, not sleep and step again."""
    in_step = asyncio.Event()

    async def swallowing() -> None:
        in_step.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # the reply came in the same instant: returned as a success

    task = asyncio.create_task(every(3600, swallowing, "beat"))
    await in_step.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # a TimeoutError if the loop went on
            await task


async def test_a_publish_waits_for_nats_within_its_patience() -> None:
    flaky = Flaky(2, nats.errors.ConnectionReconnectingError())
    kept_alive: list[int] = []

    async def waiting() -> None:
        kept_alive.append(flaky.calls)

    ack = await publish_patiently(flaky, "s", b"x", patience_s=5, waiting=waiting, retry_s=0.001)
    assert ack.seq == 3 and kept_alive == [1, 2]


async def test_past_its_patience_a_publish_raises_what_nats_said() -> None:
    flaky = Flaky(1000, nats.errors.TimeoutError())
    with pytest.raises(nats.errors.TimeoutError):
        await publish_patiently(flaky, "s", b"x", patience_s=0.05, retry_s=0.01)
    assert 2 <= flaky.calls < 1000
    once = Flaky(1, nats.errors.TimeoutError())
    with pytest.raises(nats.errors.TimeoutError):
        await publish_patiently(once, "s", b"x", patience_s=0)
    assert once.calls == 1


async def test_an_error_that_is_not_an_outage_is_raised_at_once() -> None:
    flaky = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        await publish_patiently(flaky, "s", b"x", patience_s=5, retry_s=0.001)
    assert flaky.calls == 1
