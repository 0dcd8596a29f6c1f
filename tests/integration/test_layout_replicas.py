"""Replicas of the layout on a real three-server JetStream cluster (loopback, no TLS: the TLS
cluster has its own tests): a layout made with one replica is raised to three by the
gateway's start, with what it held kept; replicas are never lowered; on one server "auto"
means one replica."""

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client

from common.jetstream import ensure_layout, layout_replicas, layout_streams
from common.natsconf import ClusterConf
from common.natsserver import NatsServer
from gateway.app import Gateway
from schemas import Layout
from tests.integration.test_gateway_support import settings_for
from tests.natsusers import connect_as

DEADLINE_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cluster(tmp_path: Path, layout: Layout, nats_passwords: dict[str, str]) -> AsyncIterator[list[NatsServer]]:
    ports = {name: free_port() for name in ("n1", "n2", "n3")}
    servers: list[NatsServer] = []
    try:
        for name, port in ports.items():
            peers = tuple(f"127.0.0.1:{p}" for other, p in ports.items() if other != name)
            conf = ClusterConf(name="faas", password="route-password-for-tests", port=port, routes=peers)
            server = NatsServer(
                tmp_path / name,
                passwords=nats_passwords,
                layout=layout,
                cluster=conf,
                server_name=name,
                monitor_port=0,  # /connz: which server a client is on
            )
            await server.start()
            servers.append(server)
        yield servers
    finally:
        for server in reversed(servers):
            await server.stop()
    for server in servers:
        assert not server.violations, server.violations


async def when_ready(nc: Client, layout: Layout, replicas: int) -> None:
    """ensure_layout once the cluster has elected its meta leader (a moment after the start)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            try:
                await ensure_layout(nc.jetstream(), layout, replicas=replicas)
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                await asyncio.sleep(0.2)


async def replicas_of(nc: Client, layout: Layout) -> dict[str, int]:
    js = nc.jetstream()
    return {name: (await js.stream_info(name)).config.num_replicas or 1 for name in layout_streams(layout)}


async def test_an_r1_layout_is_raised_to_r3_by_the_gateway(cluster: list[NatsServer], layout: Layout) -> None:
    admin = await connect_as(cluster[0], "admin")
    try:
        await when_ready(admin, layout, replicas=1)
        assert set((await replicas_of(admin, layout)).values()) == {1}
        kv = await admin.jetstream().key_value(layout.runtimes_bucket)
        await kv.put("kept", b"through the raise")
        # The gateway's start sees three servers (one given, two from its cluster) and raises.
        async with Gateway(settings_for(cluster[1], layout, nats_replicas="auto")) as gw:
            assert gw.port > 0
        raised = await replicas_of(admin, layout)
        assert raised == dict.fromkeys(layout_streams(layout), 3)
        info = await admin.jetstream().stream_info(f"KV_{layout.runtimes_bucket}")
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2  # a leader and two replicas
        assert (await kv.get("kept")).value == b"through the raise"
        # A gateway set to one replica (or seeing one server) lowers nothing.
        await ensure_layout(admin.jetstream(), layout, replicas=1)
        assert await replicas_of(admin, layout) == raised
    finally:
        await admin.close()


async def test_auto_counts_the_servers_of_the_cluster(cluster: list[NatsServer], layout: Layout) -> None:
    gateway = await connect_as(cluster[2], "gateway")
    try:
        async with asyncio.timeout(DEADLINE_S):  # until the routes are up and gossiped
            while True:
                if layout_replicas(gateway) == 3:
                    break
                await asyncio.sleep(0.1)
        assert layout_replicas(gateway, 2) == 2
    finally:
        await gateway.close()


async def test_auto_on_one_server_is_one_replica(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    gateway = await connect_as(nats_server, "gateway")
    try:
        assert layout_replicas(gateway) == 1
        await ensure_layout(gateway.jetstream(), layout, replicas=layout_replicas(gateway))
        assert set((await replicas_of(nc, layout)).values()) == {1}
    finally:
        await gateway.close()
