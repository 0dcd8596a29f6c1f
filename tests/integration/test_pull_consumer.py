"""The lean pull consumer (common/pull.py) on a real nats-server: batches, linger."""

import asyncio
import secrets
from collections import deque
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from common.pull import ConsumerGone, PullConsumer


@pytest.fixture
async def stream(nc: Client) -> AsyncIterator[tuple[str, str]]:
    js = nc.jetstream()
    name = "PULL" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    await js.add_consumer(name, ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT))
    yield name, name.lower()
    await js.delete_stream(name)


async def publish(nc: Client, subject: str, n: int, start: int = 0) -> None:
    js = nc.jetstream()
    for i in range(start, start + n):
        await js.publish(f"{subject}.x", str(i).encode())


async def test_a_lingering_batch_takes_what_comes_until_it_is_full(nc: Client, stream: tuple[str, str]) -> None:
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    try:
        await publish(nc, subject, 1)

        async def later() -> None:
            for i in range(1, 5):
                await asyncio.sleep(0.02)
                await publish(nc, subject, 1, start=i)

        feeder = asyncio.create_task(later())
        # a linger far longer than the test: the batch must end because it is full
        batch = await asyncio.wait_for(pull.fetch(5, timeout=10, linger=60), 10)
        await feeder
        assert [m.data for m in batch] == [b"0", b"1", b"2", b"3", b"4"]
        for m in batch:
            await m.ack()

        await publish(nc, subject, 2, start=5)
        partial = await asyncio.wait_for(pull.fetch(10, timeout=10, linger=0.1), 10)
        assert [m.data for m in partial] == [b"5", b"6"]  # the linger ran out: what there is
        for m in partial:
            await m.ack()

        assert await pull.fetch(10, timeout=0.2) == []  # nothing more
    finally:
        await pull.close()


async def pending(nc: Client, name: str) -> tuple[int, int]:
    info = await nc.jetstream().consumer_info(name, "c")
    return info.num_pending, info.num_ack_pending


async def test_ack_next_acks_and_brings_the_next_message_without_a_pull_request(
    nc: Client, stream: tuple[str, str]
) -> None:
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    try:
        await publish(nc, subject, 3)
        [first] = await asyncio.wait_for(pull.fetch(1, timeout=5), 10)
        requests = pull._requests
        second = await asyncio.wait_for(await pull.ack_next(first), 5)
        assert second is not None and second.data == b"1"
        third = await asyncio.wait_for(await pull.ack_next(second), 5)
        assert third is not None and third.data == b"2"
        # nothing waiting: the answer is "none" at once, and the last message is acked too
        assert await asyncio.wait_for(await pull.ack_next(third), 5) is None
        assert pull._requests == requests + 3  # the acks were the only requests
        assert await pending(nc, name) == (0, 0)
        # the ordinary fetch still works after chained requests ended
        await publish(nc, subject, 1, start=3)
        [fourth] = await asyncio.wait_for(pull.fetch(1, timeout=5), 10)
        assert fourth.data == b"3"
        await fourth.ack()
    finally:
        await pull.close()


async def test_chained_workers_and_fetches_share_a_queue_each_message_once(nc: Client, stream: tuple[str, str]) -> None:
    """Deliveries do not say which request they answer: with chained acks and a fetch's own
    request open at the same time, every message is still taken exactly once and none is
    left behind, delivered to nobody."""
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    seen: list[bytes] = []
    slots = asyncio.Semaphore(4)
    workers: set[asyncio.Task[None]] = set()

    async def worker(msg: Msg) -> None:
        try:
            current: Msg | None = msg
            while current is not None:
                seen.append(current.data)
                await asyncio.sleep(0.001 * (len(seen) % 3))  # uneven work
                current = await (await pull.ack_next(current))
        finally:
            slots.release()

    async def intake() -> None:
        while True:
            await slots.acquire()
            msgs = await pull.fetch(1, timeout=0.5)
            if not msgs:
                slots.release()
            for msg in msgs:
                task = asyncio.create_task(worker(msg))
                workers.add(task)
                task.add_done_callback(workers.discard)

    loop_task = asyncio.create_task(intake())
    try:
        for burst in range(5):
            await publish(nc, subject, 40, start=burst * 40)
            await asyncio.sleep(0.05 * burst)
        async with asyncio.timeout(20):
            while len(seen) < 200 or await pending(nc, name) != (0, 0):  # noqa: ASYNC110 (server state: poll)
                await asyncio.sleep(0.05)
        assert sorted(int(d) for d in seen) == list(range(200))  # each once
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)
        await pull.close(settle=False)
        await asyncio.gather(*workers, return_exceptions=True)


async def test_after_close_ack_next_is_a_plain_ack_and_brings_nothing(nc: Client, stream: tuple[str, str]) -> None:
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    await publish(nc, subject, 1)
    [msg] = await asyncio.wait_for(pull.fetch(1, timeout=5), 10)
    await pull.close(settle=False)
    # closed: a plain ack, and no next message
    assert await asyncio.wait_for(await pull.ack_next(msg), 5) is None
    async with asyncio.timeout(5):  # the server applies an ack on its own time
        while await pending(nc, name) != (0, 0):  # noqa: ASYNC110 (server state: poll)
            await asyncio.sleep(0.02)


async def test_a_waiting_ack_next_takes_a_message_published_after_it(nc: Client, stream: tuple[str, str]) -> None:
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    try:
        await publish(nc, subject, 1)
        [first] = await asyncio.wait_for(pull.fetch(1, timeout=5), 10)
        waiting = await pull.ack_next(first, wait_s=5)
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await publish(nc, subject, 1, start=1)
        second = await asyncio.wait_for(waiting, 5)
        assert second is not None and second.data == b"1"
        # nothing comes: the request expires and the answer is None
        assert await asyncio.wait_for(await pull.ack_next(second, wait_s=0.2), 5) is None
        assert await pending(nc, name) == (0, 0)
    finally:
        await pull.close()


async def test_a_waiting_ack_next_left_by_close_strands_nothing(nc: Client, stream: tuple[str, str]) -> None:
    """An agent stopping with an ack_next still waiting on the server: a message published
    then is not delivered into the closed subscription (to wait for ack_wait), the server
    drops a request nobody listens to, so the next consumer gets it at once."""
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    await publish(nc, subject, 1)
    [first] = await asyncio.wait_for(pull.fetch(1, timeout=5), 10)
    waiting = await pull.ack_next(first, wait_s=5)
    await asyncio.sleep(0.05)
    await pull.close(settle=False)
    assert waiting.done() and waiting.result() is None
    await nc.flush()
    await publish(nc, subject, 1, start=1)
    other = await PullConsumer.bind(nc, name, "c")
    try:
        [second] = await asyncio.wait_for(other.fetch(1, timeout=3), 5)
        assert second.data == b"1" and delivery_count(second) == 1
        await second.ack()
    finally:
        await other.close()


def delivery_count(msg: Msg) -> int:
    return msg.metadata.num_delivered


async def test_next_now_takes_a_ready_message_or_none_and_leaves_no_request_open(
    nc: Client, stream: tuple[str, str]
) -> None:
    name, subject = stream
    pull = await PullConsumer.bind(nc, name, "c")
    try:
        assert await asyncio.wait_for(pull.next_now(), 5) is None  # empty: answered at once
        await publish(nc, subject, 2)
        first = await asyncio.wait_for(pull.next_now(), 5)
        assert first is not None and first.data == b"0"
        second = await asyncio.wait_for(await pull.ack_next(first), 5)  # both on one consumer
        assert second is not None and second.data == b"1"
        await second.ack()
        assert await asyncio.wait_for(pull.next_now(), 5) is None
        info = await nc.jetstream().consumer_info(name, "c")
        assert info.num_waiting == 0  # no request lingers for a message that may never come
        # published now: nobody asked for it, so it waits for the next pull
        await publish(nc, subject, 1, start=2)
        await nc.flush()
        assert pull._buffer == deque()
        assert await pending(nc, name) == (1, 0)
    finally:
        await pull.close()


async def test_next_now_on_a_deleted_consumer_raises_consumer_gone(nc: Client, stream: tuple[str, str]) -> None:
    name, _ = stream
    pull = await PullConsumer.bind(nc, name, "c")
    try:
        await nc.jetstream().delete_consumer(name, "c")
        with pytest.raises(ConsumerGone):
            await asyncio.wait_for(pull.next_now(), 5)
    finally:
        await pull.close()
