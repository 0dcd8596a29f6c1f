"""Jobs through the whole path, on real Docker: ``POST /v1/jobs`` on a gateway, a JobWorker
running it, its output followed live over Server-Sent Events, and a cancel over HTTP."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.containers.docker import DockerEngine
from node_agent.containers.firewall import SealConfig
from node_agent.jobs.worker import JobConfig, JobWorker
from schemas import Layout
from tests.e2e.conftest import wait_until
from tests.functions import PYTHON_IMAGE
from tests.integration.test_gateway_jobs_support import SseReader
from tests.integration.test_gateway_support import running_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
async def http(
    docker_ready: None, nats_server: NatsServer, nc: Client, layout: Layout
) -> AsyncIterator[aiohttp.ClientSession]:
    engine = DockerEngine()
    await engine.seal_network(SealConfig())  # jobs have network access: sealed, as the agent does
    config = JobConfig(node_id="n" + secrets.token_hex(3), grace_s=5, cancel_grace_s=1, ack_wait_s=5, poll_s=0.2)
    try:
        async with JobWorker(config, asyncio.Semaphore(2), nc, layout, engine):
            async with running_gateway(nats_server.url, layout, store_timeout_s=0.3, callbacks=False) as (_, session):
                yield session
    finally:
        await engine.close()


async def submit(http: aiohttp.ClientSession, script: str) -> str:
    spec: dict[str, Any] = {"name": "e2e-logs", "container": {"image": PYTHON_IMAGE, "command": ["sh", "-c", script]}}
    async with http.post("/v1/jobs", json=spec) as r:
        assert r.status == 201, await r.text()
        job_id: str = (await r.json())["id"]
        return job_id


async def follow(http: aiohttp.ClientSession, job_id: str) -> tuple[list[tuple[str, str]], Any]:
    async with http.get(f"/v1/jobs/{job_id}/logs", params={"follow": "true"}) as r:
        assert r.status == 200
        lines, end = await SseReader(r).until_end(timeout=60)
    assert end is not None
    return lines, end.data


async def test_a_job_followed_live_and_replayed_after_the_end(http: aiohttp.ClientSession) -> None:
    job_id = await submit(http, "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo done >&2")
    live, end = await follow(http, job_id)  # connected while queued or running
    assert end == {"id": job_id, "status": "FINISHED"}
    assert [t for s, t in live if s == "stdout"] == ["line 1", "line 2", "line 3"]
    assert ("stderr", "done") in live
    replay, _ = await follow(http, job_id)  # after the end: the same lines, once
    assert replay == live


async def test_cancel_over_http_ends_the_followed_stream(http: aiohttp.ClientSession) -> None:
    job_id = await submit(http, "echo working; sleep 60")
    async with http.get(f"/v1/jobs/{job_id}/logs", headers={"Accept": "text/event-stream"}) as r:
        reader = SseReader(r)
        first = await reader.next(timeout=60)
        assert first is not None and first.data["text"] == "working"

        async def cancelled() -> bool:
            async with http.post(f"/v1/jobs/{job_id}/cancel") as c:
                # No store runs here: the gateway reads the job's state from its events.
                assert c.status == 202, await c.text()
                return (await c.json())["status"] == "RUNNING"

        await wait_until(cancelled, 10)
        _, end = await reader.until_end(timeout=30)
    assert end is not None and end.data["status"] == "CANCELLED"
    async with http.post(f"/v1/jobs/{job_id}/cancel") as c:
        assert c.status == 409
