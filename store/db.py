"""Column types, the declarative base, and the engine factory.

The tables are in :mod:`store.tables`; the schema is created and upgraded by Alembic
(:mod:`store.migrate`), never by ``create_all``.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator


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
