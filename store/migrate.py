"""Bringing the database schema up to date with Alembic, at every start.

    await migrate(engine)        # upgrade to head, in one transaction

Alembic is synchronous: it runs inside ``AsyncConnection.run_sync`` on the store's own async
engine, so SQLite (aiosqlite) and PostgreSQL (asyncpg) are migrated by the same code.
On PostgreSQL an advisory lock serialises stores that start together on one database; the
DDL is transactional there, so a failed upgrade leaves nothing half done.

A database created before the store used Alembic (a ``calls`` table, no ``alembic_version``)
is first stamped with revision 0001, which is exactly that schema.
"""

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from common.logs import fields

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
PRE_ALEMBIC_REVISION = "0001"
# pg_advisory_xact_lock key: any constant the store alone uses ("faas" in ASCII).
_LOCK_KEY = 0x66616173


def alembic_config() -> Config:
    """A config for the store's migrations, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def migrate(engine: AsyncEngine) -> str | None:
    """Upgrade the schema to the newest revision; returns that revision."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def _upgrade(conn: Connection) -> str | None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = conn
    before = MigrationContext.configure(conn).get_current_revision()
    if before is None and inspect(conn).has_table("calls"):
        log.info("store.schema.stamp", extra=fields(revision=PRE_ALEMBIC_REVISION, reason="created before Alembic"))
        command.stamp(config, PRE_ALEMBIC_REVISION)
        before = PRE_ALEMBIC_REVISION
    command.upgrade(config, "head")
    after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("store.schema.upgraded", extra=fields(before=before, after=after))
    return after
