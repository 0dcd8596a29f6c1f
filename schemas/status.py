"""What call and job statuses share: they only move forward, QUEUED, RUNNING, then final."""

from enum import StrEnum

_RANKS = {"QUEUED": 0, "RUNNING": 1}
_FINAL = 2


class Progress(StrEnum):
    """Base of a status enum; every member but QUEUED and RUNNING is final."""

    @property
    def rank(self) -> int:
        """Order of progress: a record never moves to a lower rank."""
        return _RANKS.get(self.value, _FINAL)

    @property
    def terminal(self) -> bool:
        return self.rank == _FINAL
