"""The platform on a real three-server JetStream cluster with R3 assets: a gateway and a node
agent (fake Docker) connect with the whole server list, one server is stopped (no drain, as
a lost host), and calls go on through the other two: those queued before are recorded, new
ones run; the gateway answers 503 at most for the moment its own connection moves."""

import asyncio
from pathlib import Path

import aiohttp
from nats.aio.client import Client

from common.jetstream import layout_streams
from common.natsserver import NatsServer
from gateway.app import Gateway
from node_agent.agent import NodeAgent
from schemas import Layout
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.fakes.runtime import function_image
from tests.integration.test_gateway_support import bearer, register_function, register_runtime, settings_for
from tests.integration.test_layout_replicas import cluster, replicas_of  # noqa: F401 (fixture)
from tests.integration.test_nats_outage import agent_settings
from tests.natsusers import connect_as

DEADLINE_S = 30.0


async def echo(p: Process) -> int:
    await p.out(await p.read())
    return 0


async def sync_call(http: aiohttp.ClientSession, n: int) -> int:
    async with http.post("/v1/functions/dice/invoke", json={"n": n}) as r:
        if r.status == 200:
            assert (await r.json())["result"] == {"n": n}
        else:
            assert r.status == 503 and r.headers["Retry-After"], await r.text()
        return r.status


async def test_calls_go_on_when_one_of_three_servers_is_lost(
    cluster: list[NatsServer],  # noqa: F811
    layout: Layout,
    tmp_path: Path,
) -> None:
    urls = ",".join(s.url for s in cluster)
    engine = FakeEngine(function_image(command=echo), images={"python:3.11-slim"})
    admin: Client = await connect_as(cluster[2], "admin")
    token_file = tmp_path / "admin.token"
    gateway = Gateway(
        settings_for(cluster[0], layout, nats_url=urls, layout_wait_s=DEADLINE_S, admin_token_file=token_file)
    )
    try:
        await gateway.start()
        assert set((await replicas_of(admin, layout)).values()) == {3}, layout_streams(layout)
        settings = agent_settings(cluster[0], layout, tmp_path, "a1").model_copy(
            update={"nats_url": urls, "runtimes": ["pythonruntime"]}
        )
        async with (
            NodeAgent(settings, engine=engine) as agent,
            aiohttp.ClientSession(base_url=gateway.url, headers=bearer(token_file.read_text().strip())) as http,
        ):
            await register_runtime(http)
            await register_function(http)
            assert await sync_call(http, 0) == 200
            # Lose the server the gateway is connected to (the agent's too, or another).
            lost = await serving(cluster, "faas-gateway")
            await lost.stop()
            statuses = []
            async with asyncio.timeout(DEADLINE_S):
                for n in range(1, 40):
                    statuses.append(await sync_call(http, n))
                    if statuses[-5:] == [200] * 5:
                        break
                    await asyncio.sleep(0.1)
            assert statuses[-5:] == [200] * 5, statuses
            assert not agent.tasks.failed.is_set() and not gateway.tasks.failed.is_set()
            info = await admin.jetstream().stream_info(layout.events_stream)
            assert info.cluster is not None and info.cluster.leader != lost.server_name
    finally:
        await gateway.stop()
        await admin.close()
        await engine.close()


async def serving(servers: list[NatsServer], client: str) -> NatsServer:
    """The server that ``client`` (a connection name) is connected to, from its ``/connz``."""
    async with aiohttp.ClientSession() as http:
        for server in servers:
            async with http.get(server.monitor_url + "/connz") as r:
                if any(c.get("name") == client for c in (await r.json()).get("connections") or []):
                    return server
    raise AssertionError(f"no server has a connection named {client!r}")
