"""Invocation policies, the handler protocol, dependencies once: real NATS, real Docker."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.pools.keys import Layer, PoolKey
from schemas import CallStatus, Layout, Limits, decode_event
from tests.e2e.agent_harness import Collector, agent_settings, call
from tests.e2e.conftest import container_gone, containers_with_label, wait_until
from tests.functions import ECHO, NODE_HANDLER, PY_HANDLER, handler_runtime, python_runtime, register

pytestmark = pytest.mark.e2e


def agent_with(nats_server: NatsServer, layout: Layout, tmp_path: Path, **over: Any) -> NodeAgent:
    return NodeAgent(agent_settings(nats_server, layout, tmp_path / "cache", **over))


@pytest.fixture
async def cold_agent(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> AsyncIterator[NodeAgent]:
    async with agent_with(nats_server, layout, tmp_path, slots=4) as a:
        yield a


async def test_python_handler_protocol_results_logs_and_errors(
    cold_agent: NodeAgent, nc: Client, layout: Layout
) -> None:
    await register(nc.jetstream(), layout, handler_runtime("python"), "h", PY_HANDLER, handler="main:handler")
    done = await call(nc, layout, "python", "h", {"x": "✓ ünïcödé"})
    assert done.status == CallStatus.DONE, done
    assert done.result["echo"] == {"x": "✓ ünïcödé"}

    failed = await call(nc, layout, "python", "h", {"fail": "boom"})
    assert failed.status == CallStatus.ERROR and failed.error is not None
    assert failed.error.type == "ValueError" and "bad input: boom" in failed.error.message
    assert "Traceback" in failed.error.message and "main.py" in failed.error.message

    bad = await call(nc, layout, "python", "h", {"set": True})
    assert bad.error is not None and "not JSON-serializable" in bad.error.message


async def test_node_handler_protocol(cold_agent: NodeAgent, nc: Client, layout: Layout) -> None:
    await register(nc.jetstream(), layout, handler_runtime("node"), "nh", NODE_HANDLER, handler="index")
    done = await call(nc, layout, "node", "nh", {"x": "ß"})
    assert done.status == CallStatus.DONE, done
    assert done.result["echo"] == {"x": "ß"}
    failed = await call(nc, layout, "node", "nh", {"fail": 1})
    assert failed.error is not None and failed.error.type == "RangeError" and "nope 1" in failed.error.message


RAW_OUTPUT = {
    "python": (
        {
            "main.py": (
                "import os, subprocess\n"
                "def handler(params):\n"
                "    os.write(1, b'raw write to fd 1\\n')\n"
                "    subprocess.run(['sh', '-c', 'echo from a child process'], check=True)\n"
                "    return 'ok'\n"
            )
        },
        "main:handler",
    ),
    "node": (
        {
            "index.js": (
                "const fs = require('fs'), cp = require('child_process');\n"
                "exports.handler = async () => {\n"
                "  fs.writeSync(1, 'raw write to fd 1\\n');\n"
                "  cp.spawnSync('sh', ['-c', 'echo from a child process'], { stdio: 'inherit' });\n"
                "  return 'ok';\n"
                "};\n"
            ),
            "package.json": '{"name": "fn", "version": "1.0.0"}',
        },
        "index",
    ),
}


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_what_a_handler_writes_to_fd_1_itself_or_through_a_child_is_logged_not_taken_for_the_protocol(
    cold_agent: NodeAgent, nc: Client, layout: Layout, kind: str
) -> None:
    """Attached stdio (a cold handler call): fd 1 is not the protocol channel."""
    files, handler = RAW_OUTPUT[kind]
    await register(nc.jetstream(), layout, handler_runtime(kind), "raw", files, handler=handler)
    async with Collector(nc, layout.events_all) as events:
        done = await call(nc, layout, kind, "raw", {})
        assert done.status == CallStatus.DONE and done.result == "ok", done
        for text in (b"raw write to fd 1", b"from a child process"):
            await wait_until(lambda text=text: any(text in m for m in events.messages))  # type: ignore[misc]


async def test_warm_function_reuses_one_container_until_it_crashes(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    await register(nc.jetstream(), layout, handler_runtime("python"), "h", PY_HANDLER, handler="main:handler")
    # one warm container at most, so that consecutive calls must meet the same one
    async with agent_with(nats_server, layout, tmp_path, policy="warm-function", pool_max=1) as agent:
        first = await call(nc, layout, "python", "h", {"x": 1})  # no pool yet: falls back to cold
        assert first.status == CallStatus.DONE
        assert agent.pools is not None
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey(Layer.FUNCTION, "h", 1)))  # type: ignore[union-attr]
        a = await call(nc, layout, "python", "h", {"x": 2})
        b = await call(nc, layout, "python", "h", {"fail": "app error"})  # keeps the container
        c = await call(nc, layout, "python", "h", {"x": 3})
        assert a.status == CallStatus.DONE and c.status == CallStatus.DONE
        assert a.container == b.container == c.container
        assert a.result["pid"] == c.result["pid"]  # the very same process served both
        assert agent.executor.served["warm"] >= 3

        crashed = await call(nc, layout, "python", "h", {"crash": True})
        assert crashed.status == CallStatus.ERROR and crashed.error is not None
        assert "exit code 7" in crashed.error.message
        after = await call(nc, layout, "python", "h", {"x": 4})
        assert after.status == CallStatus.DONE and after.container != crashed.container


async def test_warm_runtime_serves_from_a_started_container(
    docker_ready: None,
    nats_server: NatsServer,
    layout: Layout,
    tmp_path: Path,
    nc: Client,
    docker: aiodocker.Docker,
) -> None:
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    async with agent_with(
        nats_server, layout, tmp_path, policy="warm-runtime", runtimes=["python"], pool_min=1
    ) as agent:
        assert agent.pools is not None
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey.runtime("python")))  # type: ignore[union-attr]
        done = await call(nc, layout, "python", "echo", {"v": "warm"})
        assert done.status == CallStatus.DONE and done.result == {"v": "warm"}
        assert agent.executor.served["stem"] == 1
        # the used container is destroyed and the pool refilled
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey.runtime("python")))  # type: ignore[union-attr]
        await wait_until(lambda: container_gone(docker, done.container))


async def test_dependencies_are_installed_once_per_version(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    uses_six = {"main.py": "import json, six\nprint(json.dumps(six.__name__))\n", "requirements.txt": "six\n"}
    await register(nc.jetstream(), layout, python_runtime(), "withdeps", uses_six, has_dependencies=True)
    async with agent_with(nats_server, layout, tmp_path / "a", ca_bundle=_host_ca()) as agent:
        first = await call(nc, layout, "python", "withdeps", timeout=300)
        second = await call(nc, layout, "python", "withdeps")
        assert first.status == CallStatus.DONE and first.result == "six", first
        assert second.status == CallStatus.DONE
        assert agent.executor.deps.builds == 1
    # another agent on the node finds the image: no install at all
    async with agent_with(nats_server, layout, tmp_path / "b", ca_bundle=_host_ca()) as agent:
        third = await call(nc, layout, "python", "withdeps")
        assert third.status == CallStatus.DONE and agent.executor.deps.builds == 0


@pytest.mark.parametrize("policy", ["warm-function", "adaptive"])
async def test_node_dependencies_are_installed_once_and_reach_warm_handlers(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client, policy: str
) -> None:
    """package.json dependencies (npm, through the host's CA bundle) are installed once per
    function version into a committed image; the warm handler containers start from it. Under
    adaptive too, from the first call on: no stem cell can serve a function with dependencies."""
    uses_dep = {
        "index.js": "const isNumber = require('is-number');\n"
        "exports.handler = async (p) => ({ n: isNumber(p.n), v: require('is-number/package.json').version });\n",
        "package.json": '{"name": "fn", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}',
    }
    await register(
        nc.jetstream(), layout, handler_runtime("node"), "nd", uses_dep, handler="index", has_dependencies=True
    )
    over: dict[str, Any] = {"ca_bundle": _host_ca(), "policy": policy, "pool_max": 1}
    async with agent_with(nats_server, layout, tmp_path / "a", **over) as agent:
        first = await call(nc, layout, "node", "nd", {"n": 5}, timeout=300)
        assert first.status == CallStatus.DONE, first
        assert first.result == {"n": True, "v": "7.0.0"}
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey(Layer.FUNCTION, "nd", 1)), timeout=120)  # type: ignore[union-attr]
        warm = await call(nc, layout, "node", "nd", {"n": "x"})
        assert warm.status == CallStatus.DONE and warm.result == {"n": False, "v": "7.0.0"}
        assert agent.executor.served["warm"] >= 1
        # once at most: adaptive's case, run after warm-function's, may find the image it built
        assert agent.executor.deps.builds == 1 or (policy == "adaptive" and agent.executor.deps.builds == 0)


def _host_ca() -> Path | None:
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    return ca if ca.exists() else None


HOG = {"main.py": "x = bytearray(400 * 1024 * 1024)\nprint(len(x))\n"}
FORK_BOMB = {"main.py": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"}
FLOOD = {"main.py": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"}


@pytest.mark.parametrize("policy", ["none", "warm-function"])
async def test_limits_end_with_clear_errors_and_leave_nothing_behind(
    docker_ready: None,
    nats_server: NatsServer,
    layout: Layout,
    tmp_path: Path,
    nc: Client,
    docker: aiodocker.Docker,
    policy: str,
) -> None:
    js = nc.jetstream()
    rt = python_runtime()
    await register(js, layout, rt, "hog", HOG, limits=Limits(memory_mb=64))
    await register(js, layout, rt, "bomb", FORK_BOMB, limits=Limits(pids=32, timeout_s=3))
    await register(js, layout, rt, "flood", FLOOD, limits=Limits(result_bytes=64 * 1024))
    await register(js, layout, rt, "echo", ECHO)
    async with agent_with(nats_server, layout, tmp_path, slots=4, policy=policy):
        hog, bomb, flood, ok = await asyncio.gather(
            call(nc, layout, "python", "hog"),
            call(nc, layout, "python", "bomb"),
            call(nc, layout, "python", "flood"),
            call(nc, layout, "python", "echo", {"still": "serving"}),
        )
        assert ok.status == CallStatus.DONE and ok.result == {"still": "serving"}
        assert hog.status == CallStatus.ERROR and hog.error is not None
        assert hog.error.type == "MemoryLimit" and "64 MB" in hog.error.message, hog.error
        assert bomb.status == CallStatus.TIMEOUT and bomb.error is not None and "3s" in bomb.error.message
        assert flood.status == CallStatus.ERROR and flood.error is not None
        assert flood.error.type == "ResultTooLarge", flood.error
        after = await call(nc, layout, "python", "echo", {"n": 1})
        assert after.status == CallStatus.DONE
        for done in (hog, bomb, flood, ok, after):
            await wait_until(lambda d=done: _no_call_containers(docker, d.call_id))


async def _no_call_containers(docker: aiodocker.Docker, call_id: str) -> bool:
    return await containers_with_label(docker, f"faas.call={call_id}") == []


@pytest.mark.parametrize("policy", ["none", "warm-function"])
async def test_handler_prints_are_published_as_log_events(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client, policy: str
) -> None:
    await register(nc.jetstream(), layout, handler_runtime("python"), "h", PY_HANDLER, handler="main:handler")
    async with agent_with(nats_server, layout, tmp_path, policy=policy, pool_max=1) as agent:
        if policy == "warm-function":
            await call(nc, layout, "python", "h", {"x": 0})
            await wait_until(lambda: agent.pools.idle_counts().get(PoolKey(Layer.FUNCTION, "h", 1)))  # type: ignore[union-attr]
        async with Collector(nc, layout.events_all) as events:
            done = await call(nc, layout, "python", "h", {"x": "ünï"})
            await wait_until(lambda: any(b'"log"' in m and done.call_id.encode() in m for m in events.messages))
    assert done.status == CallStatus.DONE
    lines = [
        line
        for m in events.messages
        if b'"kind":"log"' in m
        for line in decode_event(m).lines  # type: ignore[union-attr]
    ]
    assert any(line.text == "héllo from the handler ünï" and line.stream == "stdout" for line in lines), lines


async def test_a_warm_container_that_died_idle_is_replaced_without_failing_the_call(
    docker_ready: None,
    nats_server: NatsServer,
    layout: Layout,
    tmp_path: Path,
    nc: Client,
    docker: aiodocker.Docker,
) -> None:
    await register(nc.jetstream(), layout, handler_runtime("python"), "h", PY_HANDLER, handler="main:handler")
    async with agent_with(nats_server, layout, tmp_path, policy="warm-function", pool_max=1) as agent:
        await call(nc, layout, "python", "h", {"x": 0})
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey(Layer.FUNCTION, "h", 1)))  # type: ignore[union-attr]
        running = await docker.containers.list(filters={"label": ["faas.pool=fn_h_1"], "status": ["running"]})
        assert running
        for c in running:
            await c.kill()
        done = await call(nc, layout, "python", "h", {"x": 1}, timeout=30)
        assert done.status == CallStatus.DONE and done.attempt == 1, done
        assert done.result["echo"] == {"x": 1}


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_warm_handlers_speak_over_a_unix_socket_with_stray_output_still_logged(
    docker_ready: None,
    nats_server: NatsServer,
    layout: Layout,
    tmp_path: Path,
    nc: Client,
    docker: aiodocker.Docker,
    kind: str,
) -> None:
    """A warm-function handler container gets the protocol over a socket in a directory of its
    own (node_agent/wire/socket.py), not through Docker's attach stream; what its processes write
    to fd 2 behind the shim's back still becomes the call's logs; the directory goes with it."""
    code, handler = (PY_HANDLER, "main:handler") if kind == "python" else (NODE_HANDLER, "index")
    await register(nc.jetstream(), layout, handler_runtime(kind), "h", code, handler=handler)
    async with agent_with(nats_server, layout, tmp_path, policy="warm-function", pool_max=1) as agent:
        await call(nc, layout, kind, "h", {"x": 0})
        await wait_until(lambda: agent.pools.idle_counts().get(PoolKey(Layer.FUNCTION, "h", 1)))  # type: ignore[union-attr]
        [pooled] = await docker.containers.list(filters={"label": ["faas.pool=fn_h_1"], "status": ["running"]})
        mounts = {m["Destination"]: m["Source"] for m in (await pooled.show())["Mounts"]}
        assert "/run/faas" in mounts, mounts
        socket_dir = Path(mounts["/run/faas"])
        assert await asyncio.to_thread(socket_dir.is_dir)

        async with Collector(nc, layout.events_all) as events:
            done = await call(nc, layout, kind, "h", {"x": "ünï", "raw": True})
            if kind == "python":
                await wait_until(lambda: any(b"raw write to fd 2" in m for m in events.messages))
        assert done.status == CallStatus.DONE, done
        assert done.container == pooled.id
        assert done.result["echo"] == {"x": "ünï", "raw": True}
        again = await call(nc, layout, kind, "h", {"x": 2})
        assert again.result["pid"] == done.result["pid"]  # the same process, over the same socket
        failed = await call(nc, layout, kind, "h", {"fail": "x"})
        assert failed.status == CallStatus.ERROR and failed.container == pooled.id
    assert not await asyncio.to_thread(socket_dir.exists)
