"""Dead letters: events the store sets aside instead of retrying them for ever.

An event is set aside (a row of ``dead_letters``, a ``store.dead_letter`` log line, then the
message is terminated so that the events after it proceed) when it does not decode, or when
the database refuses it on its own (a number too large for a BIGINT, a value the database
cannot hold, a call number another call has). A batch is never set aside whole: when the
database refuses a batch, the ingest loop applies its events one by one to find which.

What is *not* a refusal is the database being unavailable (down, unreachable, locked, out
of disk or connections): :func:`unavailable` tells the two apart, and the ingest loop waits
and retries the same events then, setting nothing aside.
"""

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import exc

from store.rows import text_safe

# The error text kept per dead letter (a driver's message may quote the whole statement).
MAX_ERROR_CHARS = 4000

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError too
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,  # no connection free in the pool
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # the connection closed under the statement
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up, cancelled
    asyncpg.exceptions.PostgresSystemError,  # I/O error
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.InternalServerError,
)


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` says the database could not be asked now (retry the same events later)
    rather than that it refuses these events (set the culprit aside)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.OperationalError):
            return True  # locked, busy, disk I/O, disk full, read-only
        if isinstance(current, (sqlite3.IntegrityError, sqlite3.DataError, exc.IntegrityError, exc.DataError)):
            return False
        if isinstance(current, _UNAVAILABLE):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


@dataclass(frozen=True)
class DeadLetter:
    """One event set aside: where it was, why, and its bytes exactly as published."""

    stream: str
    sequence: int
    subject: str
    deliveries: int
    error: str
    payload: bytes
    at: datetime

    @classmethod
    def of(cls, stream: str, sequence: int, subject: str, deliveries: int, error: str, payload: bytes) -> "DeadLetter":
        return cls(
            stream=stream,
            sequence=sequence,
            subject=text_safe(subject),
            deliveries=deliveries,
            error=text_safe(error)[:MAX_ERROR_CHARS],
            payload=bytes(payload),
            at=datetime.now(UTC),
        )

    def values(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "sequence": self.sequence,
            "subject": self.subject,
            "deliveries": self.deliveries,
            "error": self.error,
            "payload": self.payload,
            "at": self.at,
        }


def describe(err: BaseException) -> str:
    """The error as kept in a dead letter: its type and message, the driver's own if wrapped."""
    orig = getattr(err, "orig", None)
    inner = orig if isinstance(orig, BaseException) else err
    return f"{type(inner).__name__}: {inner}"
