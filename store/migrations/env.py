"""Alembic environment of the store.

The store calls Alembic with an open connection in ``config.attributes["connection"]``
(:mod:`store.migrate`, through ``AsyncConnection.run_sync``). The ``alembic`` command line
(see ``alembic.ini`` here) gets an async engine on ``FAAS_STORE_DATABASE_URL`` instead.
"""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import store.tables  # noqa: F401  (puts every table on Base.metadata)
from store.db import Base, make_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters tables by copying them: Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from store.settings import StoreSettings

    engine = make_engine(StoreSettings().database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    elif context.is_offline_mode():
        raise SystemExit("offline (--sql) mode is not supported: run against a database")
    else:
        asyncio.run(_run_from_settings())


_main()
