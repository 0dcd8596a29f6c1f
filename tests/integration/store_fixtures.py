"""The fixtures the store's integration tests share: ``settings`` (a fresh database of each
backend, SQLite and, when available, PostgreSQL) and ``stores`` (a factory of running stores,
stopped at the test's end). A test module takes them with
``from tests.integration.store_fixtures import settings, stores``."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.natsserver import NatsServer
from schemas import Layout
from store import StoreSettings
from tests.integration.test_store_support import StoreFactory, store_factory, store_settings
from tests.unit.test_store_backends import BACKENDS, fresh_database


@pytest.fixture(params=BACKENDS)
async def settings(
    request: pytest.FixtureRequest, nats_server: NatsServer, layout: Layout, tmp_path: Path
) -> AsyncIterator[StoreSettings]:
    async with fresh_database(request.param, tmp_path) as url:
        yield store_settings(nats_server, layout, tmp_path, database_url=url)


@pytest.fixture
async def stores() -> AsyncIterator[StoreFactory]:
    async with store_factory() as make:
        yield make
