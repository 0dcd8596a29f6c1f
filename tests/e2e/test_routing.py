"""Routing to the node that holds a function warm, and no stranded call when it dies."""

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiodocker
import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway, GatewaySettings
from node_agent.agent import NodeAgent
from schemas import Layout, NodeState, decode
from tests.e2e.agent_harness import agent_settings
from tests.functions import PY_HANDLER, handler_runtime, register

pytestmark = pytest.mark.e2e


async def _warm_on(nc: Client, layout: Layout, node_id: str, key: str) -> bool:
    kv = await nc.jetstream().key_value(layout.nodes_bucket)
    try:
        state = decode(NodeState, (await kv.get(node_id)).value or b"{}")
    except Exception:
        return False
    return state.warm_functions.get(key, 0) > 0


async def test_calls_go_to_the_warm_node_and_survive_its_death(
    docker_ready: None, docker: aiodocker.Docker, nats_server: NatsServer, nc: Client, layout: Layout, tmp_path: Path
) -> None:
    await register(nc.jetstream(), layout, handler_runtime("python"), "f", PY_HANDLER, handler="main:handler")
    warm = agent_settings(
        nats_server.url, layout, tmp_path / "w", node_id="warmnode", policy="warm-function", ack_wait_s=3, heartbeat_s=1
    )
    env = {f"FAAS_AGENT_{k.upper()}": str(v) for k, v in warm.model_dump().items() if v is not None}
    env["FAAS_AGENT_RUNTIMES"] = '["python"]'
    # short (a socket path has at most 107 bytes), and removed below with what the killed
    # agent leaves (its containers too: only a restart of the same node would remove them)
    sockets = tempfile.mkdtemp(prefix="faas-t-")
    env["FAAS_AGENT_SOCKET_DIR"] = sockets
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node_agent",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    cold = agent_settings(
        nats_server.url, layout, tmp_path / "c", node_id="coldnode", runtimes=["python"], ack_wait_s=3, heartbeat_s=1
    )
    token_file = tmp_path / "admin.token"
    gw_settings = GatewaySettings(
        nats_url=nats_server.url, prefix=layout.prefix, host="127.0.0.1", port=0, admin_token_file=token_file
    )
    try:
        async with NodeAgent(cold), Gateway(gw_settings) as gw:
            headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
            async with aiohttp.ClientSession(gw.url, headers=headers) as http:

                async def invoke(i: int) -> dict:  # type: ignore[type-arg]
                    async with http.post("/v1/functions/f/invoke?wait=90", json={"i": i}) as resp:
                        assert resp.status == 200, await resp.text()
                        return await resp.json()  # type: ignore[no-any-return]

                # Until the warm node has seen f, calls land on either node; then it holds f warm.
                i = 0
                while not await _warm_on(nc, layout, "warmnode", "f@1"):
                    assert (await invoke(i))["status"] == "DONE"
                    i += 1
                    assert i < 50, "the warm node never held f warm"
                routed = [await invoke(100 + k) for k in range(6)]
                assert all(r["status"] == "DONE" for r in routed)
                assert [r["node"] for r in routed] == ["warmnode"] * 6

                proc.kill()  # SIGKILL: its heartbeat stays in the bucket until the TTL expires
                await proc.wait()
                after = await asyncio.gather(*(invoke(200 + k) for k in range(4)))
                assert [r["status"] for r in after] == ["DONE"] * 4
                assert {r["node"] for r in after} == {"coldnode"}
                assert sorted(r["result"]["echo"]["i"] for r in after) == [200, 201, 202, 203]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        left = await docker.containers.list(all=True, filters={"label": ["faas.node=warmnode"]})
        for container in left:
            await container.delete(force=True)
        shutil.rmtree(sockets, ignore_errors=True)
