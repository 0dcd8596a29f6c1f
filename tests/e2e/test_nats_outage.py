"""A NATS outage under the whole platform (``faas up``'s processes, a real agent and Docker):
a call that is running when nats-server stops, and finishes while it is down (about 10 s),
is recorded DONE once NATS is back, on its first attempt: nothing exited, nothing ran twice.
The gateway answers 503 with Retry-After meanwhile."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from faas_cli.up import Platform
from tests.e2e.platform_harness import poll_json, running_platform, session
from tests.functions import zip_bytes

pytestmark = pytest.mark.e2e

OUTAGE_S = 10.0
SLOW = {
    "main.py": "import json, sys, time\np = json.load(sys.stdin)\ntime.sleep(p['sleep'])\nprint(json.dumps(p))\n",
    "requirements.txt": "",
}
RUNTIME = {"name": "py", "image": "faas-python", "path": "/app", "dependencies": "", "run": "python3 main.py"}


@pytest.fixture
async def platform(docker_ready: None, tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path / "platform") as p:
        yield p


async def test_a_call_running_through_a_nats_outage_is_recorded_after_it(platform: Platform) -> None:
    async with session(platform) as http:
        async with http.post("/v1/runtimes", json=RUNTIME) as r:
            assert r.status == 201, await r.text()
        form = aiohttp.FormData()
        form.add_field("name", "slow")
        form.add_field("runtime", "py")
        form.add_field("module", zip_bytes(SLOW), filename="slow.zip")
        async with http.post("/v1/functions", data=form) as r:
            assert r.status == 201, await r.text()
        async with http.post("/v1/functions/slow/invoke?async=true", json={"sleep": 3}) as r:
            assert r.status == 202, await r.text()
            call = await r.json()
        await poll_json(http, f"/v1/calls/{call['id']}", lambda s, b: s == 200 and b["status"] == "RUNNING")

        await platform.nats.stop()  # the call finishes about 3 s into the outage
        await asyncio.sleep(1.0)
        async with http.get("/v1/calls") as r:
            assert r.status == 503 and r.headers["Retry-After"], await r.text()
        await asyncio.sleep(OUTAGE_S - 1.0)
        await platform.nats.start()

        done = await poll_json(http, f"/v1/calls/{call['id']}", lambda s, b: s == 200 and b["status"] != "RUNNING")
        assert done["status"] == "DONE" and done["result"] == {"sleep": 3}, done
        assert done["attempts"] == 1
        # and the platform goes on
        async with http.post("/v1/functions/slow/invoke", json={"sleep": 0}) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["status"] == "DONE"
