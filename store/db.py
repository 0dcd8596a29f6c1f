"""The SQL model of call records, the engine factory, and conversion to ``schemas.CallRecord``.

The table is defined here and only here so that Alembic migrations can be generated from
``Base.metadata`` later. Until then :func:`create_schema` creates what is missing at start.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Float, Index, Integer, String, Text, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from schemas import CallRecord, CallStatus, ErrorInfo


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and read back timezone-aware, on SQLite as on PostgreSQL.

    SQLite keeps no offset: without this an aware datetime would be stored with its local
    wall-clock fields and read back naive. A naive value is taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Params and results are free-form JSON: any value, strings and lists included. A top-level
# null is stored as SQL NULL; the wire contract (``schemas.encode`` drops None) cannot tell
# "no result" from a JSON null result either, so nothing is lost.
FreeJSON = JSON(none_as_null=True)


class Base(DeclarativeBase):
    pass


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
    error_type: Mapped[str | None] = mapped_column(String)
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(FreeJSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # Listing is "newest first by number", usually filtered by function or status: these
    # also serve plain lookups by function or status (their leading column).
    __table_args__ = (
        Index("ix_calls_function_number", "function", "number"),
        Index("ix_calls_status_number", "status", "number"),
    )


calls = CallRow.__table__


# --- engine ---------------------------------------------------------------------------------


def _prepare_sqlite_path(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite, WAL and ``synchronous=NORMAL`` on every connection.

    WAL lets queries read while the ingest loop writes; NORMAL fsyncs at checkpoints only,
    which is safe in WAL mode (a power cut may lose the last commits, never corrupt) and
    what batched ingest needs to keep up.
    """
    _prepare_sqlite_path(url)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


# --- conversion -----------------------------------------------------------------------------

# Every column a CallRecord fills, i.e. all but updated_at (which the writer sets).
RECORD_COLUMNS = tuple(c.name for c in calls.columns if c.name != "updated_at")


def record_to_values(record: CallRecord) -> dict[str, Any]:
    """Column values of a record (without ``updated_at``)."""
    return {
        "id": record.id,
        "number": record.number,
        "function": record.function,
        "version": record.version,
        "runtime": record.runtime,
        "params": record.params,
        "status": record.status.value,
        "attempts": record.attempts,
        "node": record.node,
        "container": record.container,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_ms": record.duration_ms,
        "exit_code": record.exit_code,
        "error_type": record.error.type if record.error else None,
        "error_message": record.error.message if record.error else None,
        "result": record.result,
    }


def row_to_record(row: Mapping[Any, Any]) -> CallRecord:
    """A record from a row mapping (``result.mappings()`` or ``Row._mapping``)."""
    error = None
    if row["error_type"] is not None or row["error_message"] is not None:
        error = ErrorInfo(type=row["error_type"] or "Error", message=row["error_message"] or "")
    return CallRecord(
        id=row["id"],
        number=row["number"],
        function=row["function"],
        version=row["version"],
        runtime=row["runtime"],
        params=row["params"],
        status=CallStatus(row["status"]),
        attempts=row["attempts"],
        node=row["node"],
        container=row["container"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        exit_code=row["exit_code"],
        error=error,
        result=row["result"],
    )
