"""Shared fixtures: a real nats-server per test (port chosen by the server, temporary store
dir; it starts in ~10 ms) with the users and permissions of common/natsauth.py for the test's
own NATS prefix, so that the whole suite runs under the permission model: services connect as
their own user, the test's client as ``admin`` (tests/natsusers.py). A permission violation
by any client fails the test, unless it is marked ``nats_denials`` (it expects some)."""

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.jetstream import ensure_layout
from common.natsauth import USERS, new_password
from common.natsserver import NatsServer
from schemas import Layout
from tests.natsusers import connect_as


@pytest.fixture(scope="session")
def nats_passwords() -> dict[str, str]:
    return {user: new_password() for user in USERS}


@pytest.fixture
async def nats_server(
    tmp_path_factory: pytest.TempPathFactory,
    layout: Layout,
    nats_passwords: dict[str, str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"), passwords=nats_passwords, layout=layout)
    async with server:
        yield server
    if request.node.get_closest_marker("nats_denials") is None:
        assert not server.violations, "NATS permission violations:\n" + "\n".join(server.violations)


@pytest.fixture
def layout() -> Layout:
    return Layout(prefix="t" + secrets.token_hex(4))


@pytest.fixture
async def nc(nats_server: NatsServer, layout: Layout) -> AsyncIterator[Client]:
    client = await connect_as(nats_server, "admin")
    await ensure_layout(client.jetstream(), layout)
    yield client
    await client.drain()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


NatsAs = Callable[[str], Awaitable[Client]]


@pytest.fixture
async def nats_as(nats_server: NatsServer, nc: Client) -> AsyncIterator[NatsAs]:
    """``await nats_as("agent")``: a client of the test's server as that user (closed after
    the test), for a service's component under test; the layout is there (``nc`` made it)."""
    made: list[Client] = []

    async def connect(user: str) -> Client:
        client = await connect_as(nats_server, user, name=f"test-{user}")
        made.append(client)
        return client

    yield connect
    for client in made:
        await client.close()


@pytest.fixture
async def agent_nc(nats_as: NatsAs) -> Client:
    return await nats_as("agent")


@pytest.fixture
async def gateway_nc(nats_as: NatsAs) -> Client:
    return await nats_as("gateway")


@pytest.fixture
async def store_nc(nats_as: NatsAs) -> Client:
    return await nats_as("store")
