"""Calls waiting for their nested calls give their node slot back meanwhile.

A parent that holds its slot while its children wait for one deadlocks as soon as a tree is
deeper than the node has slots. So while a call waits for at least one child it is *parked*:
its slot is free for other calls (its children among them), its container stays its own
outside the slot count. Before it goes on it takes a slot again, waiting for one like any
call. Parked containers are bounded per node (``max_parked``): a call that would park past
the bound is refused its nested call (:class:`TooManyParked`), so that a wide tree cannot
hold every container of the node.
"""

from node_agent.calls.slots import Slots
from node_agent.errors import AgentError


class TooManyParked(AgentError):
    kind = "TooManyWaitingCalls"


class Parking:
    """The node's parked calls, counted against ``max_parked``."""

    def __init__(self, slots: Slots, max_parked: int) -> None:
        self._slots = slots
        self.max_parked = max_parked
        self.count = 0

    def park(self) -> None:
        """Give the caller's slot back; raises :class:`TooManyParked` at the bound."""
        if self.count >= self.max_parked:
            raise TooManyParked(
                f"this node already holds {self.count} calls waiting for nested calls (max_parked);"
                " retry later or call fewer functions at once"
            )
        self.count += 1
        self._slots.release()

    async def unpark(self) -> None:
        """Take a slot again (waiting for one like any call)."""
        await self._slots.acquire()
        self.count -= 1

    def abandon(self) -> None:
        """A parked call ends without taking a slot again (timed out, cancelled)."""
        self.count -= 1
        self._slots.forfeit()
