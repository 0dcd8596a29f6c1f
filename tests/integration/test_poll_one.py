"""A long poll for one message that can be withdrawn (common/pollone.py), on a real
nats-server: a withdrawn request takes nothing, so the message goes to the next request at
once (not after an ack wait); a delivery is returned whole; a deleted consumer is said so."""

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from common.pollone import poll_one
from common.pull import ConsumerGone

DEADLINE_S = 5.0


@pytest.fixture
async def consumer(nc: Client) -> AsyncIterator[tuple[str, str]]:
    """(subject to publish on, the consumer's pull request subject); ack wait of a minute."""
    js = nc.jetstream()
    name = "POLL" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE))
    await js.add_consumer(name, ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=60))
    yield f"{name.lower()}.x", f"$JS.API.CONSUMER.MSG.NEXT.{name}.c"
    await js.delete_stream(name)


async def test_a_delivery_is_returned_and_a_quiet_request_expires_empty(nc: Client, consumer: tuple[str, str]) -> None:
    subject, next_subject = consumer
    never = asyncio.get_running_loop().create_future()
    assert await asyncio.wait_for(poll_one(nc, next_subject, 0.2, never), DEADLINE_S) is None
    waiting = asyncio.create_task(poll_one(nc, next_subject, 30, never))
    await asyncio.sleep(0.1)
    await nc.jetstream().publish(subject, b"hello")
    msg = await asyncio.wait_for(waiting, DEADLINE_S)
    assert msg is not None and msg.data == b"hello"
    await msg.ack()


async def test_a_withdrawn_request_leaves_the_next_message_to_others_at_once(
    nc: Client, consumer: tuple[str, str]
) -> None:
    subject, next_subject = consumer
    withdraw = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(poll_one(nc, next_subject, 30, withdraw))
    await asyncio.sleep(0.1)  # the request is open at the server
    withdraw.set_result(None)
    assert await asyncio.wait_for(waiting, DEADLINE_S) is None  # at once, not after 30 s
    # Published after the withdrawal: the withdrawn request must not take it (else it would
    # be pending an ack for a minute).
    await nc.jetstream().publish(subject, b"next")
    other = await asyncio.wait_for(poll_one(nc, next_subject, 2, asyncio.get_running_loop().create_future()), 5)
    assert other is not None and other.data == b"next"
    await other.ack()
    # Withdrawn before it starts: no request at all.
    assert await poll_one(nc, next_subject, 30, withdraw) is None


async def test_a_cancelled_poll_hands_back_nothing_it_did_not_take(nc: Client, consumer: tuple[str, str]) -> None:
    subject, next_subject = consumer
    waiting = asyncio.create_task(poll_one(nc, next_subject, 30, asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await nc.jetstream().publish(subject, b"after")
    got = await poll_one(nc, next_subject, 2, asyncio.get_running_loop().create_future())
    assert got is not None and got.data == b"after"
    await got.ack()


async def test_a_deleted_consumer_is_consumer_gone(nc: Client, consumer: tuple[str, str]) -> None:
    _, next_subject = consumer
    stream = next_subject.split(".")[-2]
    waiting = asyncio.create_task(poll_one(nc, next_subject, 30, asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0.1)
    await nc.jetstream().delete_consumer(stream, "c")
    with pytest.raises(ConsumerGone):
        await asyncio.wait_for(waiting, DEADLINE_S)
