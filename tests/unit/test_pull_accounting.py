"""The lean pull consumer's bookkeeping when ack_next requests and a fetch's own request are
open at once (common/pull.py). Deliveries do not say which request they answer, so the
races that real NATS produces only now and then are played here message by message, on a
fake connection that records what is published."""

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from common.pull import ConsumerGone, PullConsumer


class FakeSub:
    async def unsubscribe(self) -> None:
        pass


class FakeNats:
    is_connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str | None]] = []

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Any) -> FakeSub:
        return FakeSub()

    async def publish(self, subject: str, payload: bytes = b"", reply: str | None = None) -> None:
        self.published.append((subject, payload, reply))

    def requests(self) -> list[str]:
        """Reply subjects of the pull requests (not the ack_next ones)."""
        return [reply or "" for subject, _, reply in self.published if subject.startswith("$JS.API.CONSUMER")]


def delivery(n: int) -> Msg:
    return Msg(None, subject="work.x", reply=f"$JS.ACK.S.c.1.{n}.{n}.0.0", data=str(n).encode())  # type: ignore[arg-type]


def status(subject: str, code: str) -> Msg:
    return Msg(None, subject=subject, data=b"", headers={"Status": code})  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def bound() -> tuple[PullConsumer, FakeNats]:
    nc = FakeNats()
    pull = await PullConsumer.bind(nc, "S", "c")  # type: ignore[arg-type]
    return pull, nc


async def test_a_delivery_goes_to_the_oldest_ack_next_then_to_the_fetch() -> None:
    pull, nc = await bound()
    first = await pull.ack_next(delivery(1))
    second = await pull.ack_next(delivery(2))
    assert [p for _, p, _ in nc.published] == [b'+NXT {"batch":1,"no_wait":true}'] * 2
    await pull._on_msg(delivery(3))
    await pull._on_msg(delivery(4))
    assert (await first).data == b"3" and (await second).data == b"4"  # type: ignore[union-attr]
    await pull._on_msg(delivery(5))  # no ack_next waiting: buffered for a fetch
    assert [m.data for m in await pull.fetch(1, timeout=1)] == [b"5"]


async def test_an_empty_ack_next_answers_none() -> None:
    pull, nc = await bound()
    waiting = await pull.ack_next(delivery(1))
    reply = nc.published[-1][2]
    assert reply is not None
    await pull._on_msg(status(reply, "404"))
    assert waiting.done() and waiting.result() is None  # at once, not by the lost-request timer


async def test_a_fetch_whose_message_an_ack_next_took_requests_again_at_once() -> None:
    """The fetch's request delivered, an ack_next waiter took the message, then that
    ack_next's own request ended empty: the fetch's request is over and a new one goes out
    (rather than waiting for the old one to count as lost, seconds later)."""
    pull, nc = await bound()
    fetching = asyncio.create_task(pull.fetch(1, timeout=5))
    await settle()
    assert len(nc.requests()) == 1
    chained = await pull.ack_next(delivery(1))
    next_reply = nc.published[-1][2]
    assert next_reply is not None
    await pull._on_msg(delivery(2))  # the fetch's request answered, the ack_next takes it
    assert (await chained).data == b"2"  # type: ignore[union-attr]
    await pull._on_msg(status(next_reply, "404"))  # the ack_next's own request: empty
    await settle()
    assert len(nc.requests()) == 2  # the fetch asked again
    await pull._on_msg(delivery(3))
    assert [m.data for m in await fetching] == [b"3"]


async def test_an_empty_ack_next_whose_waiter_was_served_ends_another_waiter() -> None:
    pull, nc = await bound()
    a = await pull.ack_next(delivery(1))
    a_reply = nc.published[-1][2]
    b = await pull.ack_next(delivery(2))
    assert a_reply is not None
    await pull._on_msg(delivery(3))  # b's request delivered; a (the oldest) takes it
    await pull._on_msg(status(a_reply, "404"))  # a's request was empty: b gets nothing
    assert (await a).data == b"3"  # type: ignore[union-attr]
    assert b.done() and b.result() is None  # at once, not by the lost-request timer


async def test_a_cancelled_waiter_is_skipped_and_close_answers_the_rest() -> None:
    pull, _ = await bound()
    gone = await pull.ack_next(delivery(1))
    waiting = await pull.ack_next(delivery(2))
    later = await pull.ack_next(delivery(3))
    gone.cancel()
    await pull._on_msg(delivery(4))
    assert (await waiting).data == b"4"  # type: ignore[union-attr]
    await pull.close(settle=False)
    assert await later is None


async def test_next_now_is_a_no_wait_request_of_one_answered_by_a_delivery_or_a_status() -> None:
    pull, nc = await bound()
    taking = asyncio.create_task(pull.next_now())
    await settle()
    assert nc.published == [("$JS.API.CONSUMER.MSG.NEXT.S.c", b'{"batch":1,"no_wait":true}', "_INBOX.test.n1")]
    await pull._on_msg(delivery(1))
    assert (await taking).data == b"1"  # type: ignore[union-attr]

    empty = asyncio.create_task(pull.next_now())
    await settle()
    await pull._on_msg(status("_INBOX.test.n2", "404"))
    assert await empty is None
    assert pull._open is None and nc.requests() == ["_INBOX.test.n1", "_INBOX.test.n2"]  # no fetch request


async def test_next_now_raises_consumer_gone_when_nobody_serves_the_consumer() -> None:
    pull, _ = await bound()
    taking = asyncio.create_task(pull.next_now())
    await settle()
    await pull._on_msg(status("_INBOX.test.n1", "503"))
    with pytest.raises(ConsumerGone):
        await taking


async def test_an_unexpected_status_ends_next_now_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    pull, _ = await bound()
    taking = asyncio.create_task(pull.next_now())
    await settle()
    await pull._on_msg(status("_INBOX.test.n1", "409"))
    assert await taking is None
    assert [r.getMessage() for r in caplog.records] == ["pull.next_status"]
