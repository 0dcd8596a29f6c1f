"""Cancelling calls on the whole platform (``faas up``'s processes, real containers), under each
invocation policy, with one slot on the node: a running call's container is stopped (a warm
one is not given back to its pool) and the call ends CANCELLED with its logs so far, its sync
caller answered with that record (cancelled over HTTP); a call queued behind it never runs
(cancelled over NATS)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from nats.aio.client import Client

from schemas import Layout
from tests.e2e.conftest import container_gone, wait_until
from tests.e2e.natsproto import RawNats
from tests.e2e.platform_harness import poll_json, running_platform, session
from tests.functions import zip_bytes
from tests.natsusers import connect_as

pytestmark = pytest.mark.e2e

RUNTIME = {
    "name": "py",
    "image": "faas-python",
    "path": "/app",
    "dependencies": "pip install -r requirements.txt",
    "run": "python3 main.py",
    "handler_command": "python3 /opt/faas/faas_bootstrap.py",
}
# Says which container serves it (a container's host name is its short id), then naps.
NAPPER = {
    "main.py": (
        "import socket, time\n"
        "def handler(params):\n"
        "    host = socket.gethostname()\n"
        "    print('host', host, flush=True)\n"
        "    time.sleep(params.get('sleep', 0))\n"
        "    return {'host': host}\n"
    ),
    "requirements.txt": "",
}


async def deploy(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/runtimes", json=RUNTIME) as r:
        assert r.status in (200, 201), await r.text()
    form = aiohttp.FormData()
    form.add_field("name", "napper")
    form.add_field("runtime", "py")
    form.add_field("handler", "main:handler")
    form.add_field("limits", json.dumps({"timeout_s": 300}))
    form.add_field("module", zip_bytes(NAPPER), filename="napper.zip", content_type="application/zip")
    async with http.post("/v1/functions", data=form) as r:
        assert r.status in (200, 201), await r.text()


async def invoke(http: aiohttp.ClientSession, params: dict[str, Any], query: str = "") -> tuple[int, Any]:
    async with http.post(f"/v1/functions/napper/invoke{query}", json=params) as r:
        return r.status, await r.json()


async def cancel(http: aiohttp.ClientSession, call_id: str) -> tuple[int, Any]:
    async with http.post(f"/v1/calls/{call_id}/cancel") as r:
        return r.status, await r.json()


async def queue_empty(nc: Client) -> bool:
    """Every invocation taken and acked (the agent's own bookkeeping is done with them)."""
    return (await nc.jetstream().stream_info(Layout().invoke_stream)).state.messages == 0


async def served_warm(http: aiohttp.ClientSession) -> str:
    """Call until a call is served by a container holding the function; its host name."""
    for _ in range(60):
        status, record = await invoke(http, {})
        assert status == 200 and record["status"] == "DONE", record
        if record["served"] == "warm":
            return str(record["result"]["host"])
        await asyncio.sleep(0.5)  # the pool grows from the demand of the calls so far
    raise AssertionError("no call was served warm")


@pytest.mark.parametrize("policy", ["none", "warm-runtime", "warm-function", "adaptive"])
async def test_cancel_a_running_and_a_queued_call(docker: aiodocker.Docker, tmp_path: Path, policy: str) -> None:
    async with running_platform(tmp_path / "data", slots=1, policy=policy) as platform, session(platform) as http:
        await deploy(http)
        warm = await served_warm(http) if policy in ("warm-function", "adaptive") else None

        # A: a sync call on the node's one slot, napping
        running = asyncio.create_task(invoke(http, {"sleep": 250}, "?wait=120"))
        page = await poll_json(http, "/v1/calls?function=napper&status=RUNNING", lambda s, b: s == 200 and b["items"])
        a = page["items"][0]["id"]
        logs = await poll_json(http, f"/v1/calls/{a}/logs", lambda s, b: s == 200 and b["lines"])
        host = logs["lines"][0]["text"].removeprefix("host ")
        if warm is not None:
            assert host == warm  # in the function's warm container
        # B: queued behind it
        status, b = await invoke(http, {"sleep": 250}, "?async=true")
        assert status == 202 and b["status"] == "QUEUED", b

        # B over NATS, as `nats req faas.cancel.<id> ''` with the invoker user
        password = (platform.data / "nats-users" / "invoker.password").read_text().strip()
        raw = await RawNats.connect(platform.nats.host, platform.nats.port, "invoker", password)
        try:
            reply = await raw.req(f"faas.cancel.{b['id']}", b"")
        finally:
            await raw.close()
        assert reply.json() == {"id": b["id"], "status": "CANCELLED", "cancel_requested": True}, reply
        status, body = await cancel(http, a)
        assert (status, body["status"]) == (202, "RUNNING")
        status, record = await running
        assert status == 200 and record["id"] == a and record["status"] == "CANCELLED", record
        assert record["error"] == {"type": "Cancelled", "message": "cancelled while it ran"}
        await wait_until(lambda: container_gone(docker, host), timeout=30)

        # The records: A with its logs so far; B never started anywhere.
        stored = await poll_json(http, f"/v1/calls/{a}", lambda s, b: s == 200 and b["status"] == "CANCELLED")
        assert stored["node"] and stored["started_at"]
        logs = await poll_json(http, f"/v1/calls/{a}/logs", lambda s, b: s == 200)
        assert [line["text"] for line in logs["lines"]] == [f"host {host}"]
        assert await cancel(http, b["id"]) == (
            409,
            {"error": {"code": "conflict", "message": f"call {b['id']!r} has already ended (CANCELLED)"}},
        )

        # The node goes on, not in A's container; B leaves the queue without running.
        status, after = await invoke(http, {})
        assert status == 200 and after["status"] == "DONE" and after["result"]["host"] != host, after
        nc = await connect_as(platform.nats, "admin")
        try:
            await wait_until(lambda: queue_empty(nc), timeout=30)
        finally:
            await nc.close()
        stored = await poll_json(http, f"/v1/calls/{b['id']}", lambda s, b: s == 200 and b["status"] == "CANCELLED")
        assert stored["node"] is None and stored["started_at"] is None
        assert stored["error"] == {"type": "Cancelled", "message": "cancelled before it started"}
        async with http.get(f"/v1/calls/{b['id']}/logs") as r:
            assert r.status == 404 or (await r.json())["lines"] == []
