"""The store's tables: call records, log chunks, job records, dead letters.

Defined here and only here: Alembic migrations (``store/migrations``) are written against
``Base.metadata``, and a unit test checks that the two agree. Code reads and writes through
the Core tables (``calls``, ``call_logs``, ``jobs``, ``dead_letters``), whose keys are the column names.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, LargeBinary, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from store.db import Base, FreeJSON, UTCDateTime


class CallRow(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True, index=True)
    function: Mapped[str | None] = mapped_column(String)
    version: Mapped[int | None] = mapped_column(Integer)
    runtime: Mapped[str | None] = mapped_column(String)
    params: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String)
    container: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # How the call was served: cold, stem or warm (schemas.Served).
    served: Mapped[str | None] = mapped_column(String(8))
    error_type: Mapped[str | None] = mapped_column(String)
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    # When the store last wrote the row (wall clock), not an event time.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # schemas.CallbackOutcome as JSON: the latest delivery outcome.
    callback: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    # A nested call's parent and the root of its tree (NULL for a call made from outside).
    parent: Mapped[str | None] = mapped_column(String(64))
    root: Mapped[str | None] = mapped_column(String(64), index=True)

    # Listing is "newest first by number", usually filtered by function or status: these
    # also serve plain lookups by function or status (their leading column).
    __table_args__ = (
        Index("ix_calls_function_number", "function", "number"),
        Index("ix_calls_status_number", "status", "number"),
    )


class LogChunkRow(Base):
    """One ``Logs`` event: the key makes a redelivered chunk a no-op."""

    __tablename__ = "call_logs"

    # A call id or a job id: both publish their output the same way.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The chunk's list of schemas.LogEntry, as JSON text encoded once by the schemas models
    # (cheaper than a JSON column, and exactly the bytes a LogPage reply carries).
    lines: Mapped[str] = mapped_column(Text)
    # Size of those lines in a LogPage reply, separators included, so that a reader can stop
    # at the NATS payload limit without loading everything.
    nbytes: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean)


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # What was asked: NULL until the job_accepted event is seen (never registry_auth, nor
    # the values of secret_env: only its names).
    name: Mapped[str | None] = mapped_column(String)
    description: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int | None] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(String)
    command: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    env: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    secret_env_names: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    meta: Mapped[Any] = mapped_column("metadata", FreeJSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    # Where it ran: the finished event's node when it names one, else the latest start's.
    started_node: Mapped[str | None] = mapped_column(String)
    finished_node: Mapped[str | None] = mapped_column(String)
    container: Mapped[str | None] = mapped_column(String)
    # Time of the latest job_started: a redelivered job's newest start says where it runs.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Time of the latest event applied (an event time, as JobRecord.updated_at).
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # schemas.JobResult as JSON.
    result: Mapped[Any] = mapped_column(FreeJSON, nullable=True)

    # Listing is newest first by (created_at, id), optionally filtered by status.
    __table_args__ = (
        Index("ix_jobs_created_id", "created_at", "id"),
        Index("ix_jobs_status_created_id", "status", "created_at", "id"),
    )


class DeadLetterRow(Base):
    """An event the store could not apply (store.ingest): set aside so that the events after
    it are stored, with what an operator needs to see why and to publish it again."""

    __tablename__ = "dead_letters"

    # Where the event was in the events stream: a redelivered dead letter is one row.
    stream: Mapped[str] = mapped_column(String, primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    # How many times JetStream had delivered it to a store.
    deliveries: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    # The message exactly as it was published (any bytes).
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    # When it was set aside (the store's clock).
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_dead_letters_at", "at"),)


def _table(mapped: type[Base]) -> Table:
    # Mapped classes type __table__ as FromClause; these are plain Tables.
    table = mapped.__table__
    assert isinstance(table, Table)
    return table


calls = _table(CallRow)
call_logs = _table(LogChunkRow)
jobs = _table(JobRow)
dead_letters = _table(DeadLetterRow)
