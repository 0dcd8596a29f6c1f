"""User code never runs as root: on every path a call can take (a new container, a runtime's
warm container with its shim, a function's warm container over its socket or stdio), the
function finds itself the call user (10001), able to write its own directory and /tmp."""

from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.pools.keys import PoolKey
from schemas import CallStatus, FunctionRecord, Layout
from tests.e2e.agent_harness import agent_settings, call
from tests.e2e.conftest import wait_until
from tests.functions import handler_runtime, register

pytestmark = pytest.mark.e2e

CALL_USER = {"uid": 10001, "gid": 10001, "wrote": True}

# Each writes a file in its own directory and in /tmp, and says who it is.
WHO = {
    "main.py": (
        "import json, os\n"
        "open('written', 'w').write('x'); open('/tmp/written', 'w').write('x')\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'wrote': True}))\n"
    ),
    "requirements.txt": "",
}
WHO_HANDLER = {
    "main.py": (
        "import os\n"
        "def handler(params):\n"
        "    open('written', 'w').write('x'); open('/tmp/written', 'w').write('x')\n"
        "    return {'uid': os.getuid(), 'gid': os.getgid(), 'wrote': True}\n"
    ),
    "requirements.txt": "",
}
NODE_WHO_HANDLER = {
    "index.js": (
        "const fs = require('fs');\n"
        "exports.handler = async () => {\n"
        "  fs.writeFileSync('written', 'x'); fs.writeFileSync('/tmp/written', 'x');\n"
        "  return { uid: process.getuid(), gid: process.getgid(), wrote: true };\n"
        "};\n"
    ),
    "package.json": '{"name": "fn", "version": "1.0.0"}',
}

# The path each policy's calls take once its pools hold a container.
WARM_PATH = {"none": "cold", "warm-runtime": "stem", "warm-function": "warm"}


async def _functions(nc: Client, layout: Layout) -> list[tuple[str, FunctionRecord]]:
    js = nc.jetstream()
    py, node = handler_runtime("python"), handler_runtime("node")
    return [
        ("python", await register(js, layout, py, "who", WHO)),
        ("python", await register(js, layout, py, "whoh", WHO_HANDLER, handler="main:handler")),
        ("node", await register(js, layout, node, "nwho", NODE_WHO_HANDLER, handler="index")),
    ]


@pytest.mark.parametrize("policy", ["none", "warm-runtime", "warm-function"])
async def test_calls_run_as_the_call_user_on_every_path(
    policy: str, docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    functions = await _functions(nc, layout)
    settings = agent_settings(
        nats_server, layout, tmp_path / "cache", policy=policy, runtimes=["python", "node"], pool_min=1
    )
    async with NodeAgent(settings) as agent:
        for runtime, fn in functions:
            key = PoolKey.function(fn) if policy == "warm-function" else PoolKey.runtime(runtime)
            results: list[Any] = []
            first = await call(nc, layout, runtime, fn.name)  # a warm-function pool grows from it
            results.append(first)
            if agent.pools is not None:
                await wait_until(lambda k=key: agent.pools.idle_counts().get(k), 60)  # type: ignore[union-attr,misc]
            before = agent.executor.served[WARM_PATH[policy]]
            results.append(await call(nc, layout, runtime, fn.name))
            assert agent.executor.served[WARM_PATH[policy]] == before + 1, (fn.name, agent.executor.served)
            for done in results:
                assert done.status == CallStatus.DONE, (fn.name, done.error)
                assert done.result == CALL_USER, (fn.name, done.result)


async def test_adaptive_stem_and_promoted_calls_run_as_the_call_user(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    functions = await _functions(nc, layout)
    settings = agent_settings(
        nats_server, layout, tmp_path / "cache", policy="adaptive", runtimes=["python", "node"], stem_min=1
    )
    async with NodeAgent(settings) as agent:
        pools = agent.pools
        assert pools is not None
        for runtime, fn in functions:
            await wait_until(lambda r=runtime: pools.idle_counts().get(PoolKey.runtime(r)), 60)  # type: ignore[misc]
            first = await call(nc, layout, runtime, fn.name)
            await wait_until(lambda r=runtime: pools.idle_counts().get(PoolKey.runtime(r)), 60)  # type: ignore[misc]
            second = await call(nc, layout, runtime, fn.name)
            # a handler stays in the stem cell that loaded it (promoted: warm over its socket)
            assert (first.served, second.served) == ("stem", "warm" if fn.handler else "stem"), fn.name
            for done in (first, second):
                assert done.status == CallStatus.DONE, (fn.name, done.error)
                assert done.result == CALL_USER, (fn.name, done.result)
