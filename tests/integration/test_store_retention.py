"""The store's retention task against a real nats-server: with a tiny retention the records
it has stored are deleted by the periodic round, which says how many it deleted."""

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from schemas import Layout
from store import StoreSettings
from tests.integration.test_store_support import (
    StoreFactory,
    done_call,
    eventually,
    find_call,
    publish,
    store_factory,
    store_settings,
    story,
)


@pytest.fixture
async def stores() -> AsyncIterator[StoreFactory]:
    async with store_factory() as make:
        yield make


async def test_a_tiny_retention_deletes_what_was_stored(
    nc: Client,
    layout: Layout,
    nats_server: NatsServer,
    tmp_path: Path,
    stores: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 0.5 s of retention, a round every 0.2 s.
    settings: StoreSettings = store_settings(
        nats_server, layout, tmp_path, retention_days=0.5 / 86400, retention_interval_s=0.2
    )
    store = stores(settings)
    with caplog.at_level(logging.INFO, logger="store.retention"):
        await store.start()
        await publish(nc, layout, story("brief", 1))
        await eventually(lambda: done_call(nc, layout, "brief"))

        async def gone() -> bool | None:
            return True if await find_call(nc, layout, id="brief") is None else None

        await eventually(gone, timeout=10)
    deleted = [r.__dict__["fields"] for r in caplog.records if r.getMessage() == "store.retention.deleted"]
    assert sum(f["calls"] for f in deleted) == 1
    assert store.retention is not None and store.retention.totals.calls == 1


async def test_retention_zero_keeps_everything(
    nc: Client, nats_server: NatsServer, layout: Layout, tmp_path: Path, stores: StoreFactory
) -> None:
    store = stores(store_settings(nats_server, layout, tmp_path, retention_days=0))
    await store.start()
    assert store.retention is None
