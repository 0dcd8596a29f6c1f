"""A three-server JetStream cluster on loopback as a deployment runs it: certificates from
common/tlsgen.py, TLS for clients and for routes (both ends verified), routes authenticated
with the route user, the users and permissions of common/natsauth.py, monitoring on
127.0.0.1. The routes come up and carry a replicated stream; a client or a route without TLS,
or a route with the wrong password, is refused."""

import asyncio
import json
import secrets
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
import pytest
from nats.js.api import StreamConfig

from common.natsconf import ClusterConf, TlsFiles
from common.natsserver import NatsServer
from common.tlsgen import issue
from schemas import Layout
from tests.natsusers import connect_as

DEADLINE_S = 30.0


def _tls(certs: Path, name: str) -> TlsFiles:
    issued = issue(certs, name)
    return TlsFiles(cert=issued.cert, key=issued.key, ca=certs / "ca.pem")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(
    tmp: Path,
    certs: Path,
    name: str,
    layout: Layout,
    passwords: dict[str, str],
    route_pw: str,
    routes: list[str],
    route_port: int,
) -> NatsServer:
    tls = _tls(certs, name)
    return NatsServer(
        tmp / name,
        passwords=passwords,
        layout=layout,
        monitor_port=0,
        tls=tls,
        cluster=ClusterConf(name="faas", password=route_pw, port=route_port, routes=tuple(routes), tls=tls),
        server_name=name,
    )


async def _monitor(server: NatsServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(server.monitor_url + path) as resp:
        assert resp.status == 200
        return await resp.json()


async def _routes_up(servers: list[NatsServer]) -> None:
    """Until each server has routes to every other one (a full mesh)."""
    names = {s.server_name for s in servers}
    async with asyncio.timeout(DEADLINE_S):
        while True:
            peers = [{r.get("remote_name") for r in (await _monitor(s, "/routez"))["routes"]} for s in servers]
            if all(seen == names - {s.server_name} for s, seen in zip(servers, peers, strict=True)):
                return
            await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(
    tmp_path: Path, layout: Layout, nats_passwords: dict[str, str], request: pytest.FixtureRequest
) -> AsyncIterator[tuple[list[NatsServer], str]]:
    certs = tmp_path / "certs"
    route_pw = secrets.token_urlsafe(24)
    # A JetStream cluster's servers start with routes to the others: their route ports first.
    ports = {name: free_port() for name in ("n1", "n2", "n3")}
    servers: list[NatsServer] = []
    try:
        for name, port in ports.items():
            peers = [f"127.0.0.1:{p}" for other, p in ports.items() if other != name]
            server = _server(tmp_path, certs, name, layout, nats_passwords, route_pw, peers, port)
            await server.start()
            servers.append(server)
        yield servers, route_pw
    finally:
        for server in reversed(servers):
            await server.stop()
    if request.node.get_closest_marker("nats_denials") is None:
        for server in servers:
            assert not server.violations, server.violations


async def test_tls_routes_come_up_and_carry_a_replicated_stream(
    cluster: tuple[list[NatsServer], str], layout: Layout
) -> None:
    servers, _ = cluster
    await _routes_up(servers)
    for server in servers:
        varz = await _monitor(server, "/varz")
        # clients: TLS (their certificates not required); routes: TLS, verified both ways
        assert varz["tls_required"] is True and not varz.get("tls_verify")
        assert varz["cluster"]["tls_required"] is True and varz["cluster"]["tls_verify"] is True

    clients = [await connect_as(s, "admin") for s in servers]
    try:
        stream = StreamConfig(name=f"{layout.prefix.upper()}_R3", subjects=[f"{layout.prefix}.r3.>"], num_replicas=3)
        js = [nc.jetstream() for nc in clients]
        async with asyncio.timeout(DEADLINE_S):
            while True:  # the JetStream meta group elects a leader once the routes are up
                try:
                    await js[0].add_stream(stream)
                    break
                except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                    await asyncio.sleep(0.2)
        ack = await js[1].publish(f"{layout.prefix}.r3.x", b"replicated", stream=stream.name)
        msg = await js[2].get_msg(stream.name, ack.seq)
        assert msg.data == b"replicated"
        info = await js[2].stream_info(stream.name)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2  # a leader and two replicas
    finally:
        for nc in clients:
            await nc.close()


async def test_a_client_without_tls_is_refused(cluster: tuple[list[NatsServer], str]) -> None:
    servers, _ = cluster
    server = servers[0]
    # the nats protocol in clear: the server says TLS is required and drops it
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        info = json.loads((await reader.readline())[5:])
        assert info["tls_required"] is True
        password = server.passwords["admin"] if server.passwords else ""
        writer.write(b'CONNECT {"user":"admin","pass":"' + password.encode() + b'"}\r\nPING\r\n')
        answer = await asyncio.wait_for(reader.read(4096), DEADLINE_S)
        assert b"PONG" not in answer
    finally:
        writer.close()
        await writer.wait_closed()
    # nats-py with TLS but not trusting the deployment's CA: the handshake fails
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(
            server.url.replace("tls://", "nats://"),
            allow_reconnect=False,
            tls=ssl.create_default_context(),
            user="admin",
            password=password,
        )
    # with the CA: in
    nc = await connect_as(server, "admin")
    assert nc.is_connected and nc.connected_url is not None
    await nc.close()


async def test_a_route_without_tls_is_refused(cluster: tuple[list[NatsServer], str]) -> None:
    """A route listener speaks TLS first: a route in clear gets nothing in clear, and is closed."""
    servers, route_pw = cluster
    assert servers[0].cluster is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].cluster.port)
    try:
        connect = {"user": "route", "pass": route_pw, "name": "plain"}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = await asyncio.wait_for(reader.read(), DEADLINE_S)  # until the server closes it
        assert b"INFO" not in answer and b"PONG" not in answer
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.nats_denials
async def test_a_route_with_the_wrong_password_is_refused(
    cluster: tuple[list[NatsServer], str], tmp_path: Path, layout: Layout, nats_passwords: dict[str, str]
) -> None:
    servers, _ = cluster
    first = servers[0]
    assert first.cluster is not None
    seed = f"127.0.0.1:{first.cluster.port}"
    intruder = _server(
        tmp_path, tmp_path / "certs", "n4", layout, nats_passwords, "not-the-route-password", [seed], free_port()
    )
    await intruder.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                if any("authentication error" in v.lower() for v in first.violations):
                    break
                await asyncio.sleep(0.05)
        routez = await _monitor(first, "/routez")
        assert "n4" not in {r.get("remote_name") for r in routez["routes"]}
    finally:
        await intruder.stop()
