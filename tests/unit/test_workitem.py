"""The work-item toolkit (common/workitem.py): a delivery's sequence and attempt, the give-up
check, the keepalive's beats, and "publish the final event, then ack"."""

import asyncio
import logging

import pytest
from nats.aio.msg import Msg
from nats.js.api import PubAck

from common.workitem import MIN_KEEPALIVE_S, PRIOR_ATTEMPTS, Delivery, KeepAlive, keepalive_interval
from tests.fakes.publisher import FakePublisher

REPLY = "$JS.ACK.FAAS_INVOKE.rt_python.3.1207.1190.1763800000000000000.17"


class FakeMsg:
    """What a keepalive and a finish use of a delivery, recording the order of things."""

    def __init__(self, log: list[str] | None = None, fail_first: int = 0, hang: bool = False) -> None:
        self.reply = REPLY
        self.subject = "faas.invoke.rt.python"
        self.headers: dict[str, str] | None = None
        self.log = log if log is not None else []
        self.beats: list[float] = []
        self.beat = asyncio.Event()
        self.fail_first = fail_first
        self.hang = hang

    async def in_progress(self) -> None:
        self.beats.append(asyncio.get_running_loop().time())
        self.beat.set()
        if self.hang:
            await asyncio.Event().wait()
        if len(self.beats) <= self.fail_first:
            raise ConnectionError("nats reconnecting")

    async def ack(self) -> None:
        self.log.append("ack")


def delivered(msg: FakeMsg) -> Delivery:
    return Delivery(msg)  # type: ignore[arg-type]


async def beats(msg: FakeMsg, n: int) -> None:
    """Until ``msg`` has had ``n`` beats (the test's timeout is the bound)."""
    while len(msg.beats) < n:
        msg.beat.clear()
        await msg.beat.wait()


# --- delivery (its reply-subject parse: tests/unit/test_agent_reply_subject.py) ---------
def test_an_item_is_given_up_only_past_max_attempts() -> None:
    d = Delivery(Msg(None, subject="s", reply=REPLY))  # type: ignore[arg-type]
    assert d.attempt == 3
    assert d.exhausted(3) is None
    assert d.exhausted(2) == "gave up after 2 attempts without completing"


def test_attempts_made_before_an_item_was_moved_count() -> None:
    moved = Delivery(Msg(None, subject="s", reply=REPLY, headers={PRIOR_ATTEMPTS: "4"}))  # type: ignore[arg-type]
    assert moved.attempt == 3 + 4
    assert moved.exhausted(6) is not None


def test_the_keepalive_beats_every_third_of_the_ack_wait_and_not_too_often() -> None:
    assert keepalive_interval(30) == 10
    assert keepalive_interval(0.3) == MIN_KEEPALIVE_S == 0.5


# --- keepalive --------------------------------------------------------------------------
async def test_the_keepalive_beats_every_interval_while_the_block_runs() -> None:
    msg, clock = FakeMsg(), FakeMsg()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10):
        start = loop.time()
        async with KeepAlive(msg, 0.02, "c1"):  # type: ignore[arg-type]
            await beats(msg, 3)
        # the k-th beat no earlier than k intervals in (asyncio may run a timer a hair early)
        since = [t - start for t in msg.beats]
        assert all(t >= 0.02 * k - 0.001 for k, t in enumerate(since, 1)), since
        # stopped: while another keepalive beats five times more, this one does not beat again
        after = len(msg.beats)
        async with KeepAlive(clock, 0.01):  # type: ignore[arg-type]
            await beats(clock, 5)
        assert len(msg.beats) == after


async def test_a_block_shorter_than_the_interval_never_beats() -> None:
    msg, clock = FakeMsg(), FakeMsg()
    async with asyncio.timeout(10):
        async with KeepAlive(msg, 0.05):  # type: ignore[arg-type]
            pass
        async with KeepAlive(clock, 0.02):  # type: ignore[arg-type]
            await beats(clock, 5)  # well past the first beat the other would have had
    assert msg.beats == []


async def test_a_failed_beat_is_logged_and_the_next_one_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    msg = FakeMsg(fail_first=2)
    caplog.set_level(logging.WARNING, logger="common.workitem")
    async with asyncio.timeout(10), KeepAlive(msg, 0.01, "j1"):  # type: ignore[arg-type]
        await beats(msg, 3)
    failed = [r for r in caplog.records if r.getMessage() == "workitem.keepalive_failed"]
    assert len(failed) == 2
    assert failed[0].fields["item"] == "j1"  # type: ignore[attr-defined]


async def test_a_hanging_beat_is_not_doubled_and_is_cancelled_on_exit() -> None:
    msg, clock = FakeMsg(hang=True), FakeMsg()
    async with asyncio.timeout(10):
        keepalive = KeepAlive(msg, 0.01)  # type: ignore[arg-type]
        async with keepalive:
            await beats(msg, 1)
            beat = keepalive._beat
            async with KeepAlive(clock, 0.01):  # type: ignore[arg-type]
                await beats(clock, 5)  # several ticks of the hanging one
            assert len(msg.beats) == 1
        assert beat is not None and beat.cancelled()


async def test_an_exception_in_the_block_goes_through_and_stops_the_beats() -> None:
    msg = FakeMsg()
    keepalive = KeepAlive(msg, 0.01)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        async with asyncio.timeout(10), keepalive:
            await beats(msg, 1)
            raise RuntimeError("the work failed")
    assert keepalive._timer is None and keepalive._beat is None


async def test_the_keepalive_can_be_started_and_stopped_around_a_body_too() -> None:
    msg = FakeMsg()
    async with asyncio.timeout(10):
        keepalive = KeepAlive(msg, 0.01).start()  # type: ignore[arg-type]
        await beats(msg, 2)
        await keepalive.stop()
        await keepalive.stop()  # idempotent
    assert keepalive._timer is None and keepalive._beat is None


# --- finish ---------------------------------------------------------------------------
async def test_finish_publishes_the_event_then_its_copies_then_acks() -> None:
    order: list[str] = []
    publisher = FakePublisher(log=order)
    d = delivered(FakeMsg(order))
    headers = {"Nats-Msg-Id": "c1.x"}
    await d.finish(publisher, "ev.c1.finished", b"{}", stream="EV", headers=headers, copies=["ev.c1.callback_due"])
    assert order == ["publish ev.c1.finished", "publish ev.c1.callback_due", "ack"]
    assert publisher.sent == [("ev.c1.finished", b"{}", headers), ("ev.c1.callback_due", b"{}", {})]
    assert publisher.streams == ["EV", "EV"]


async def test_finish_acks_the_way_it_is_told() -> None:
    order: list[str] = []
    acked: list[object] = []

    async def ack(msg: Msg) -> None:
        acked.append(msg)

    msg = FakeMsg(order)
    await delivered(msg).finish(FakePublisher(log=order), "ev.j1.job_finished", b"{}", ack=ack)
    assert order == ["publish ev.j1.job_finished"] and acked == [msg]


async def test_nothing_is_acked_when_the_event_was_not_stored() -> None:
    order: list[str] = []

    class Down(FakePublisher):
        async def publish(self, subject: str, payload: bytes = b"", *args: object, **kw: object) -> PubAck:
            raise TimeoutError

    with pytest.raises(TimeoutError):
        await delivered(FakeMsg(order)).finish(Down(order), "ev.c1.finished", b"{}")
    assert order == []
