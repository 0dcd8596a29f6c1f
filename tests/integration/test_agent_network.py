"""The node agent and its containers' network, on a real nats-server with the fake engine:
sealed at start (NATS's own address denied), or refused, with a clear error, to the calls and
jobs that ask for network when sealing failed, while calls without network run on."""

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.settings import AgentSettings
from schemas import CallStatus, JobContainer, JobMaxima, JobMessage, JobSpec, JobStatus, Layout, Limits, encode
from tests.e2e.agent_harness import call
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.fakes.runtime import function_image
from tests.functions import DICE, PYTHON_IMAGE, python_runtime, register
from tests.integration.test_job_worker import finished
from tests.integration.test_store_support import eventually
from tests.natsusers import service_settings

UNSEALED = "iptables is not installed on this host"
REFUSED = f"this node gives containers no network access: sealing its network failed: {UNSEALED}"


async def dice(p: Process) -> int:
    params = json.loads(await p.read())
    await p.out(json.dumps([6] * params.get("count", 1)).encode())
    return 0


def settings(server: NatsServer, layout: Layout, tmp_path: Path, **over: Any) -> AgentSettings:
    values: dict[str, Any] = dict(
        **service_settings(server, "agent"),
        prefix=layout.prefix,
        node_id="n" + secrets.token_hex(3),
        runtimes=["python"],
        handler_sockets=False,
        fetch_timeout_s=0.5,
        grace_s=1.0,
        cache_dir=tmp_path / "cache",
        metrics_port=0,
    )
    return AgentSettings(**{**values, **over})


@pytest.fixture
async def functions(nc: Client, layout: Layout) -> None:
    js = nc.jetstream()
    await register(js, layout, python_runtime(run="python3 test.py"), "offline", DICE)
    await register(js, layout, python_runtime(run="python3 test.py"), "online", DICE, limits=Limits(network=True))


@pytest.fixture
async def unsealed(
    nats_server: NatsServer, layout: Layout, tmp_path: Path, functions: None
) -> AsyncIterator[FakeEngine]:
    """An agent whose sealing fails."""
    engine = FakeEngine(function_image(command=dice), images={PYTHON_IMAGE}, seal_fails=UNSEALED)
    async with NodeAgent(settings(nats_server, layout, tmp_path), engine=engine):
        yield engine


async def test_sealing_failed_network_calls_and_jobs_end_error_others_run(
    unsealed: FakeEngine, nc: Client, layout: Layout
) -> None:
    engine = unsealed
    online = await call(nc, layout, "python", "online", {"roll": "1d6"}, timeout=10)
    assert online.status == CallStatus.ERROR and online.error is not None, online
    assert online.error.type == "NetworkUnavailable"
    assert online.error.message == REFUSED, online.error.message
    offline = await call(nc, layout, "python", "offline", {"roll": "2d6"}, timeout=10)
    assert offline.status == CallStatus.DONE, offline.error
    assert not any(spec.network for spec in engine.created)  # nothing with network was made

    job_id = "j" + secrets.token_hex(6)
    job = JobMessage(
        id=job_id, spec=JobSpec(name="j", container=JobContainer(image=PYTHON_IMAGE)), created_at=datetime.now(UTC)
    )
    await nc.jetstream().publish(layout.invoke_job(5), encode(job), stream=layout.invoke_stream)
    done = await eventually(lambda: _finished_or_none(nc, layout, job_id), timeout=10)
    assert done.status == JobStatus.ERROR and done.result.error == REFUSED


async def _finished_or_none(nc: Client, layout: Layout, job_id: str) -> Any:
    try:
        return await finished(nc, layout, job_id)
    except Exception:
        return None


async def test_the_agent_seals_at_start_with_its_settings_and_nats_denied(
    nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client, functions: None
) -> None:
    engine = FakeEngine(function_image(command=dice), images={PYTHON_IMAGE})
    over = {
        "network_allow": ["10.9.0.0/16:3128"],
        "network_deny": ["203.0.113.7"],
        "network_check_s": 0.05,
        "job_max_memory_mb": 4096,
        "job_max_cpus": 2,
    }
    async with NodeAgent(settings(nats_server, layout, tmp_path, **over), engine=engine) as agent:
        # the heartbeat says what a job may ask for here (the gateway refuses what no node allows)
        assert agent.state().job_max == JobMaxima(memory_mb=4096, cpus=2, timeout_s=3600)
        [seal, *_] = engine.seals
        assert (seal.network, seal.bridge) == ("faas-fn", "faasfn0")
        assert [(str(a.network), a.port) for a in seal.allow] == [("10.9.0.0/16", 3128)]
        assert seal.deny == ("203.0.113.7", "127.0.0.1")  # the NATS server's host is denied too
        online = await call(nc, layout, "python", "online", {"roll": "1d6"}, timeout=10)
        assert online.status == CallStatus.DONE, online.error
        assert [s.network for s in engine.created] == [True]

        # ...and kept sealed: checked again every network_check_s
        async def checked_twice() -> bool | None:
            return True if len(engine.seals) >= 3 else None

        await eventually(checked_twice, timeout=5)


async def test_an_operator_may_turn_the_seal_off(
    nats_server: NatsServer, layout: Layout, tmp_path: Path, functions: None
) -> None:
    engine = FakeEngine(function_image(command=dice), images={PYTHON_IMAGE}, seal_fails=UNSEALED)
    async with NodeAgent(settings(nats_server, layout, tmp_path, network_seal=False), engine=engine):
        assert engine.seals == [] and "open_network" in engine.calls and engine.network == "bridge"
