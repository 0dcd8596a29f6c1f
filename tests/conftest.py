"""Shared fixtures: a real nats-server per test session (port chosen by the server, temporary
store dir), and a NATS prefix per test so that tests never see each other's streams."""

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.jetstream import connect, ensure_layout
from common.natsserver import NatsServer
from schemas import Layout


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
def layout() -> Layout:
    return Layout(prefix="t" + secrets.token_hex(4))


@pytest.fixture
async def nc(nats_server: NatsServer, layout: Layout) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, "test")
    await ensure_layout(client.jetstream(), layout)
    yield client
    await client.drain()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d
