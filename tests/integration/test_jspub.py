"""The lean JetStream publisher (common/jspub.py) on a real nats-server: the same answers
and errors as ``JetStreamContext.publish``."""

import asyncio
import secrets
from collections.abc import AsyncIterator

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, NoStreamResponseError

from common.jspub import JsPublisher


@pytest.fixture
async def stream(nc: Client) -> AsyncIterator[tuple[str, str]]:
    js = nc.jetstream()
    name = "PUB" + secrets.token_hex(4).upper()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    yield name, name.lower()
    await js.delete_stream(name)


async def test_publishes_are_stored_and_acked_with_their_sequence(nc: Client, stream: tuple[str, str]) -> None:
    name, subject = stream
    pub = JsPublisher(nc)
    try:
        # concurrent publishes each get their own PubAck
        acks = await asyncio.gather(*(pub.publish(f"{subject}.a", str(i).encode(), stream=name) for i in range(20)))
        assert sorted(a.seq for a in acks) == list(range(1, 21))
        assert {a.stream for a in acks} == {name}
        js = nc.jetstream()
        for ack in acks:
            stored = await js.get_msg(name, ack.seq)
            assert stored.data == str(acks.index(ack)).encode()
        # a retried publish with the same Nats-Msg-Id is deduplicated, same sequence
        first = await pub.publish(f"{subject}.b", b"once", headers={"Nats-Msg-Id": "m1"})
        again = await pub.publish(f"{subject}.b", b"once", headers={"Nats-Msg-Id": "m1"})
        assert (again.seq, again.duplicate, first.duplicate) == (first.seq, True, None)
    finally:
        await pub.close()


async def test_errors_are_those_of_jetstream_publish(nc: Client, stream: tuple[str, str]) -> None:
    _, subject = stream
    pub = JsPublisher(nc)
    try:
        with pytest.raises(NoStreamResponseError):
            await pub.publish("nostream.here", b"x")
        with pytest.raises(BadRequestError) as err:
            await pub.publish(f"{subject}.a", b"x", stream="OTHER")
        assert err.value.err_code == 10060  # expected stream does not match

        async def silent(msg: Msg) -> None:  # takes the message, never answers
            pass

        await nc.subscribe("silent.subject", cb=silent)
        with pytest.raises(nats.errors.TimeoutError):
            await pub.publish("silent.subject", b"x", timeout=0.2)
        # and the publisher still works after each error
        assert (await pub.publish(f"{subject}.a", b"y")).seq == 1
    finally:
        await pub.close()
