"""The node's slots, shared by calls and jobs, and how a call intake waits for one.

A semaphore, plus what the intake needs to keep a pull request open on every subject it
serves without reserving a slot for each (common/pollone.py): :meth:`Slots.wait_free` until
a slot is free (without taking it), and :meth:`Slots.when_full`, a future done as soon as
none is left, which withdraws every open request. A call delivered in the instant of that
withdrawal waits for a slot, kept alive (:func:`take_slot`).

A call waiting for its nested calls gives its slot back meanwhile and takes one again before
it goes on (node_agent/nested/parking.py); one that ends without taking it back
forfeits it (:meth:`Slots.forfeit`): the release its runner makes at the end is then none.
"""

import asyncio
from typing import Literal

from nats.aio.msg import Msg

from common.workitem import Delivery


class Slots(asyncio.Semaphore):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size
        self._free = asyncio.Event()
        self._free.set()
        self._full: asyncio.Future[None] | None = None
        self._owed = 0  # releases that give back nothing (see forfeit)

    @property
    def busy(self) -> int:
        """Slots taken now."""
        return self.size - self._value

    async def acquire(self) -> Literal[True]:
        try:
            return await super().acquire()
        finally:
            self._note()

    def release(self) -> None:
        if self._owed:
            self._owed -= 1
            return
        super().release()
        self._note()

    def forfeit(self) -> None:
        """A holder gave its slot back early (released it) and ends without taking it again:
        its own last release must not free a second one."""
        self._owed += 1

    def try_acquire(self) -> bool:
        """Take a slot if one is free now (what ``acquire`` does without waiting)."""
        if self.locked():
            return False
        self._value -= 1
        self._note()
        return True

    async def wait_free(self) -> None:
        """Until a slot is free; it is not taken."""
        await self._free.wait()

    def when_full(self) -> "asyncio.Future[None]":
        """Done once no slot is free (at once if none is); a new one after slots free up."""
        if self._full is None:
            self._full = asyncio.get_running_loop().create_future()
            self._note()
        return self._full

    def _note(self) -> None:
        if self.locked():
            self._free.clear()
            if self._full is not None and not self._full.done():
                self._full.set_result(None)
        else:
            self._free.set()
            if self._full is not None and self._full.done():
                self._full = None


async def take_slot(slots: Slots, msg: Msg, ack_wait_s: float) -> None:
    """A slot for a delivered call: one free at once, else (delivered as the last one was
    taken) the next to free up, the call kept alive meanwhile so that it is not redelivered.
    Cancelled while waiting (a stop), the call goes back to the queue at once."""
    if slots.try_acquire():
        return
    delivery = Delivery(msg)
    try:
        async with delivery.keepalive(ack_wait_s, "waiting-for-slot"):
            await slots.acquire()
    except asyncio.CancelledError:
        await asyncio.shield(msg.nak())
        raise
