"""The adaptive policy on real containers: a new function's first call is a stem cell's, the
stem cell that loaded a handler stays as the function's warm container, a function with
dependencies or a full node runs cold, and every call says how it was served."""

from pathlib import Path

import aiodocker
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.pools.keys import Layer, PoolKey
from node_agent.wire.socket import SocketChannel
from schemas import CallStatus, Layout
from tests.e2e.agent_harness import call
from tests.e2e.conftest import wait_until
from tests.e2e.test_policies import agent_with
from tests.functions import ECHO, NODE_HANDLER, PY_HANDLER, handler_runtime, python_runtime, register


@pytest.mark.parametrize(
    ("kind", "files", "handler"), [("python", PY_HANDLER, "main:handler"), ("node", NODE_HANDLER, "index:handler")]
)
async def test_stem_then_warm_in_the_same_container(
    docker_ready: None,
    nats_server: NatsServer,
    layout: Layout,
    tmp_path: Path,
    nc: Client,
    kind: str,
    files: dict[str, str],
    handler: str,
) -> None:
    await register(nc.jetstream(), layout, handler_runtime(kind), "h", files, handler=handler)
    async with agent_with(nats_server, layout, tmp_path, policy="adaptive", runtimes=[kind], stem_min=1) as agent:
        pools = agent.pools
        assert pools is not None
        await wait_until(lambda: pools.idle_counts().get(PoolKey.runtime(kind)))
        first = await call(nc, layout, kind, "h", {"x": 1})
        assert first.status == CallStatus.DONE and first.served == "stem", first.error
        # the stem cell was promoted: the function's next calls meet the same process
        second = await call(nc, layout, kind, "h", {"x": 2})
        third = await call(nc, layout, kind, "h", {"x": 3})
        assert (second.served, third.served) == ("warm", "warm")
        assert first.container == second.container == third.container
        assert first.result["pid"] == third.result["pid"]
        # ... over the socket the stem cell connected while it waited, not Docker's attach stream
        promoted = pools.acquire(PoolKey(Layer.FUNCTION, "h", 1))
        assert promoted is not None and isinstance(promoted.attached, SocketChannel)
        pools.release(promoted, healthy=True, service_s=0.001)
        # the heartbeat shows the function's warm container, and the runtime has a stem cell
        # again for the next new function
        assert agent.state().warm_functions.get("h@1") == 1
        await wait_until(lambda: pools.idle_counts().get(PoolKey.runtime(kind)))


async def test_a_command_function_is_served_by_stem_cells_then_gets_a_pool(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    async with agent_with(nats_server, layout, tmp_path, policy="adaptive", runtimes=["python"], stem_min=1) as agent:
        pools = agent.pools
        assert pools is not None
        await wait_until(lambda: pools.idle_counts().get(PoolKey.runtime("python")))
        first = await call(nc, layout, "python", "echo", {"v": 1})
        assert first.status == CallStatus.DONE and first.result == {"v": 1} and first.served == "stem", first.error
        await call(nc, layout, "python", "echo", {"v": 2})  # repeat demand: a pool of its own
        key = PoolKey(Layer.FUNCTION, "echo", 1)
        await wait_until(lambda: pools.idle_counts().get(key), timeout=60)
        warm = await call(nc, layout, "python", "echo", {"v": 3})
        assert warm.status == CallStatus.DONE and warm.result == {"v": 3} and warm.served == "warm"


async def test_without_a_warm_container_a_call_runs_cold(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client, docker: aiodocker.Docker
) -> None:
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    # a full node: no room for any warm container
    async with agent_with(
        nats_server, layout, tmp_path, policy="adaptive", runtimes=["python"], stem_min=1, max_warm=0
    ) as agent:
        done = await call(nc, layout, "python", "echo", {"v": "cold"})
        assert done.status == CallStatus.DONE and done.served == "cold"
        assert agent.executor.served["cold"] == 1
