"""The lean pull consumer (common/pull.py) on a real nats-server: batches, linger."""

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from common.pull import PullConsumer


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
