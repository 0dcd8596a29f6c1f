"""``wait_event`` (common/lifecycle.py): a loop waiting on an event stops when cancelled, even
when the cancel comes in the same turn as the event (``asyncio.wait_for`` swallows that
cancellation on Python 3.11, and a stop that cancels such a loop then waits for ever)."""

import asyncio

import pytest

from common.lifecycle import wait_event


async def test_a_cancel_in_the_same_turn_as_the_event_stops_the_loop() -> None:
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await wait_event(event, 10)
            event.clear()
            rounds += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # it waits on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
    assert rounds == 0


async def test_it_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
