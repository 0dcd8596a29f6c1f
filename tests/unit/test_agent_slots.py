"""The node's slots (node_agent/calls/slots.py): intake waits for a free slot without taking
it, and is told the moment the last one is taken."""

import asyncio
from typing import Any, cast

from nats.aio.msg import Msg

from node_agent.calls.slots import Slots, take_slot


async def test_when_full_is_done_as_the_last_slot_goes_and_renewed_when_one_frees() -> None:
    slots = Slots(2)
    full = slots.when_full()
    assert not full.done()
    await slots.acquire()
    assert not full.done() and not slots.locked()
    assert slots.try_acquire()
    assert full.done() and slots.when_full() is full  # withdraws every open request
    assert not slots.try_acquire()
    slots.release()
    fresh = slots.when_full()
    assert fresh is not full and not fresh.done()


async def test_wait_free_does_not_take_the_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.wait_free())
    await asyncio.sleep(0)
    assert not waiter.done()
    slots.release()
    await asyncio.wait_for(waiter, 1)
    assert slots.try_acquire()  # still free after the wait


async def test_a_job_taking_the_last_slot_through_the_semaphore_also_fills() -> None:
    slots = Slots(1)
    full = slots.when_full()
    async with slots:  # as the job worker takes its slot
        assert full.done()
    assert not slots.locked() and not slots.when_full().done()


class _Msg:
    """A delivered call: what take_slot touches."""

    reply = "$JS.ACK.S.c.1.7.7.0.0"
    headers = None

    def __init__(self) -> None:
        self.naks = 0
        self.beat = asyncio.Event()

    async def nak(self) -> None:
        self.naks += 1

    async def in_progress(self) -> None:
        self.beat.set()


async def test_a_call_delivered_with_no_free_slot_waits_for_the_next_and_is_handed_back_on_stop() -> None:
    slots = Slots(1)
    await slots.acquire()
    msg = _Msg()
    taking = asyncio.create_task(take_slot(slots, cast(Msg, msg), ack_wait_s=1.5))
    await asyncio.wait_for(msg.beat.wait(), 5)  # a beat every ack_wait / 3 while it waits
    assert not taking.done()
    slots.release()
    await asyncio.wait_for(taking, 1)
    assert slots.locked()  # the call has the slot now

    other: Any = _Msg()
    stopping = asyncio.create_task(take_slot(slots, cast(Msg, other), ack_wait_s=30))
    await asyncio.sleep(0)
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    assert other.naks == 1  # not started: back to the queue at once
