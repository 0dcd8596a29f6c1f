"""Property-based fuzzing of every route of ``GET /openapi.json`` against a real platform: a
nats-server, the store (SQLite) and the gateway with auth on, requests sent with the admin
token (tests/integration/gateway_fuzz.py). No agent: async invocations queue; a sync one
waits at most ``max_sync_wait_s`` (0.2 s here), then answers 202.

It must find no 5xx and no answer the description does not allow. ``FAAS_FUZZ_EXAMPLES``
(default 20) sets the examples per route and pass; ``FAAS_FUZZ_SEED`` repeats a run. The
table of examples and statuses per route is printed (``pytest -s``).
"""

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
from nats.aio.client import Client

from common.natsserver import NatsServer
from schemas import Layout
from store import Store
from tests.integration.gateway_fuzz import Seeded, run_fuzz
from tests.integration.test_gateway_support import CODE, make_zip, module_form, running_gateway
from tests.integration.test_store_support import store_settings

MAX_EXAMPLES = int(os.environ.get("FAAS_FUZZ_EXAMPLES") or 20)


async def _seed(http: aiohttp.ClientSession) -> Seeded:
    runtime = {"name": "fzrt", "image": "faas-python", "run": "python3 main.py"}
    async with http.post("/v1/runtimes", json=runtime) as r:
        assert r.status == 201, await r.text()
    async with http.post("/v1/functions", data=module_form(make_zip(CODE), name="fz", runtime="fzrt")) as r:
        assert r.status == 201, await r.text()
    async with http.post("/v1/functions/fz/invoke?async=true", json={"n": 1}) as r:
        assert r.status == 202, await r.text()
        call = await r.json()
    job: dict[str, Any] = {"name": "fzjob", "container": {"image": "faas-python", "command": ["true"]}}
    async with http.post("/v1/jobs", json=job) as r:
        assert r.status == 201, await r.text()
        job_id = (await r.json())["id"]
    async with http.post("/v1/tokens", json={"role": "read", "name": "fztoken"}) as r:
        assert r.status == 201, await r.text()
    return Seeded("fzrt", "fz", call["id"], call["number"], job_id, "fztoken")


async def test_fuzz_finds_no_server_error_and_no_answer_off_the_schema(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    async with (
        Store(store_settings(nats_server, layout, tmp_path, linger_s=0)),
        running_gateway(
            nats_server, layout, callbacks=False, sync_wait_s=0.2, max_sync_wait_s=0.2, announce_after_s=0.1
        ) as (gw, http),
    ):
        seeded = await _seed(http)
        async with http.get("/openapi.json") as r:
            spec = await r.json()
        headers = {"Authorization": http.headers["Authorization"]}
        report = await asyncio.to_thread(run_fuzz, spec, gw.url, headers, seeded, MAX_EXAMPLES)
        print("\n" + report.table())
        assert not report.failures, "\n\n".join(report.failures)
        # Every route was reached, and the platform is still healthy.
        assert len(report.operations) == sum(map(len, spec["paths"].values())) and all(
            op.examples for op in report.operations
        )
        async with http.get("/healthz") as r:
            assert r.status == 200
