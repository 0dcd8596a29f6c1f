"""The store's databases: a fresh one per test on each backend, and the Alembic migrations.

Other store tests import :data:`BACKENDS` and :func:`fresh_database` from here. PostgreSQL
cases use ``FAAS_TEST_POSTGRES_URL`` (a role that may create databases: each test gets its
own, dropped afterwards); without it they skip, unless ``FAAS_REQUIRE_POSTGRES=1`` where they
fail. ``make pytest`` sets both (``scripts/ensure-postgres.sh`` starts the server).
"""

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from schemas import Accepted, Callback, CallbackOutcome, CallStatus, GetCall
from store.db import Base, make_engine, make_sessions
from store.migrate import current_revision, migrate
from store.queries import CallQueries
from store.tables import calls
from store.writer import EventWriter

POSTGRES_URL_ENV = "FAAS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "FAAS_REQUIRE_POSTGRES"
BACKENDS = ["sqlite", "postgresql"]
HEAD = "0006"


def postgres_url() -> str:
    """The PostgreSQL server of the tests; skips (or fails, when required) without one."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is not set: run scripts/ensure-postgres.sh")
    pytest.skip(f"no PostgreSQL: set {POSTGRES_URL_ENV} (scripts/ensure-postgres.sh prints one)")


@asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of this backend, dropped on exit."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/db/faas.db"
        return
    base = postgres_url()
    name = "faas_t_" + secrets.token_hex(6)
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base).set(database=name).render_as_string(hide_password=False)
        finally:
            await _drop(admin, name)
    finally:
        await admin.dispose()


async def _drop(admin: AsyncEngine, name: str) -> None:
    """Drop a test database. FORCE ends its sessions, but not an autovacuum worker busy in it
    (only a superuser may): that one is done within moments, so try again a few times."""
    for attempt in range(50):
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError as err:
            if "pg_signal_backend" not in str(err) or attempt == 49:
                raise
            await asyncio.sleep(0.1)


@asynccontextmanager
async def migrated_engine(backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database upgraded to the newest schema."""
    async with fresh_database(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            await migrate(engine)
            yield engine
        finally:
            await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(url)
    yield engine
    await engine.dispose()


async def test_upgrade_creates_everything_and_is_idempotent(engine: AsyncEngine) -> None:
    assert await current_revision(engine) is None
    assert await migrate(engine) == HEAD
    assert await migrate(engine) == HEAD  # a restart changes nothing
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert {"calls", "call_logs", "jobs", "dead_letters", "alembic_version"} <= tables


async def test_the_models_and_the_migrations_agree(engine: AsyncEngine) -> None:
    await migrate(engine)

    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_a_database_from_before_alembic_is_stamped_then_upgraded(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_old_store_schema)
    assert await migrate(engine) == HEAD

    # The old row is still there, and the new columns work on it.
    writer = EventWriter(engine)
    try:
        outcome = CallbackOutcome(url="http://x/cb", delivered=True, attempts=1, at=datetime(2025, 1, 2, tzinfo=UTC))
        await writer.apply([Callback(call_id="old", number=1, outcome=outcome)])
        record = await CallQueries(make_sessions(engine)).get(GetCall(id="old"))
        assert record.status is CallStatus.DONE and record.callback == outcome
        await writer.apply([Accepted(call_id="new", number=2)])
    finally:
        await writer.close()
    async with engine.connect() as conn:
        assert (await conn.execute(select(calls.c.id).order_by(calls.c.number))).scalars().all() == ["old", "new"]


def _old_store_schema(conn: Connection) -> None:
    # The calls table exactly as the store made it with create_all, before Alembic.
    conn.execute(
        text(
            "CREATE TABLE calls (id VARCHAR(64) NOT NULL PRIMARY KEY, number BIGINT NOT NULL,"
            " function VARCHAR, version INTEGER, runtime VARCHAR, params JSON,"
            " status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, node VARCHAR, container VARCHAR,"
            " created_at TIMESTAMP WITH TIME ZONE, started_at TIMESTAMP WITH TIME ZONE,"
            " finished_at TIMESTAMP WITH TIME ZONE, duration_ms FLOAT, exit_code INTEGER,"
            " error_type VARCHAR, error_message TEXT, result JSON,"
            " updated_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        )
    )
    conn.execute(text("CREATE UNIQUE INDEX ix_calls_number ON calls (number)"))
    conn.execute(
        insert(calls).values(id="old", number=1, status="DONE", attempts=1, updated_at=datetime(2025, 1, 1, tzinfo=UTC))
    )


async def test_stores_starting_together_on_postgresql_migrate_once(tmp_path: Path) -> None:
    async with fresh_database("postgresql", tmp_path) as url:
        engines = [make_engine(url) for _ in range(3)]
        try:
            # The advisory lock makes the others wait, then find the schema at head.
            assert await asyncio.gather(*(migrate(e) for e in engines)) == [HEAD] * 3
        finally:
            for e in engines:
                await e.dispose()
