"""The node agent against real NATS and real Docker (policy none, command protocol)."""

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path

import aiodocker
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.containers.docker import DockerEngine
from node_agent.nodeid import NodeIdInUse
from schemas import CallStatus, Invocation, Layout, Limits, RuntimeSpec, encode
from tests.e2e.agent_harness import CallWatcher, Collector, agent_env, agent_settings, call, publish, spawn_agent
from tests.e2e.conftest import containers_with_label, wait_until
from tests.functions import CRASH, DICE, ECHO, SLEEPY, python_runtime, register

pytestmark = pytest.mark.e2e


@pytest.fixture
async def agent(docker_ready: None, nats_server: NatsServer, nc: Client, layout: Layout, tmp_path: Path):
    async with NodeAgent(agent_settings(nats_server, layout, tmp_path / "cache", slots=20)) as a:
        yield a


async def test_dice_published_as_plain_json_runs_and_reports(agent: NodeAgent, nc: Client, layout: Layout):
    rt = python_runtime(run="python3 test.py")
    await register(nc.jetstream(), layout, rt, "dice", DICE)
    async with Collector(nc, layout.events_all) as events:
        # Exactly what `nats pub faas.invoke.rt.python '{"function":...}'` sends: no id, no version.
        number = await publish(nc, layout, rt.name, b'{"function": "dice", "params": {"roll": "4d6"}}')
        await wait_until(lambda: any(b'"finished"' in m for m in events.messages))
    seen = events.messages
    finished = json.loads(next(m for m in seen if b'"finished"' in m))
    assert finished["number"] == number
    assert finished["call_id"] == f"n{number}"
    assert finished["status"] == "DONE", finished
    rolls = finished["result"]
    assert len(rolls) == 4 and all(1 <= r <= 6 for r in rolls)
    assert finished["version"] == 1 and finished["runtime"] == "python"
    assert b'"started"' in seen[0]


async def test_params_reach_stdin_unchanged(agent: NodeAgent, nc: Client, layout: Layout):
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    params = {"text": "héllo ✓ 世界", "n": [1, 2.5, None], "nested": {"ok": True}}
    done = await call(nc, layout, "python", "echo", params)
    assert done.status == CallStatus.DONE
    assert done.result == params


async def test_nonzero_exit_is_an_error_with_the_stderr_tail(agent: NodeAgent, nc: Client, layout: Layout):
    await register(nc.jetstream(), layout, python_runtime(), "crash", CRASH)
    done = await call(nc, layout, "python", "crash")
    assert done.status == CallStatus.ERROR
    assert done.exit_code == 3
    assert done.error is not None and done.error.type == "NonZeroExit" and "boom" in done.error.message


async def test_hanging_call_times_out_and_its_container_is_gone(
    agent: NodeAgent, nc: Client, layout: Layout, docker: aiodocker.Docker
):
    await register(nc.jetstream(), layout, python_runtime(), "sleepy", SLEEPY, limits=Limits(timeout_s=1.5))
    done = await call(nc, layout, "python", "sleepy")
    assert done.status == CallStatus.TIMEOUT
    assert done.error is not None and "timeout of 1.5s" in done.error.message
    assert await containers_with_label(docker, f"faas.call={done.call_id}") == []


async def test_unknown_function_missing_image_and_bad_json_end_as_clear_errors(
    agent: NodeAgent, nc: Client, layout: Layout
):
    js = nc.jetstream()
    ghost = RuntimeSpec(name="ghost", image="faas-no-such-image:1", run="python3 main.py")
    await register(js, layout, ghost, "haunted", ECHO)
    done = await call(nc, layout, "ghost", "haunted")
    assert done.status == CallStatus.ERROR and done.error is not None
    assert done.error.type == "ImageNotFound" and "faas-no-such-image:1" in done.error.message

    done = await call(nc, layout, "ghost", "nobody")
    assert done.error is not None and done.error.type == "FunctionNotFound" and "nobody" in done.error.message

    async with Collector(nc, layout.events_all) as events:
        number = await publish(nc, layout, "ghost", b"{not json")
        await wait_until(lambda: events.messages)
    event = json.loads(events.messages[0])
    assert event["number"] == number and event["status"] == "ERROR"
    assert event["error"]["type"] == "InvalidInvocation" and "invalid JSON" in event["error"]["message"]


async def test_twenty_concurrent_calls_complete_and_the_loop_stays_responsive(
    agent: NodeAgent, nc: Client, layout: Layout
):
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(0.02)
            lags.append(loop.time() - t - 0.02)

    tick = asyncio.create_task(ticker())
    results = await asyncio.gather(*(call(nc, layout, "python", "echo", {"i": i}, timeout=120) for i in range(20)))
    stop.set()
    await tick
    assert [r.status for r in results] == [CallStatus.DONE] * 20
    assert sorted(r.result["i"] for r in results) == list(range(20))
    # All 20 ran at once on this agent (20 slots): a blocking Docker call would show up as
    # seconds of lag; an event loop that keeps turning stays far below this bound.
    assert max(lags) < 1.0, f"event loop stalled for {max(lags):.2f}s"
    assert len({r.container for r in results}) == 20


async def test_killed_agent_call_completes_after_redelivery(
    docker_ready: None,
    nats_server: NatsServer,
    nc: Client,
    layout: Layout,
    tmp_path: Path,
    docker: aiodocker.Docker,
):
    slow = {
        "main.py": "import json, sys, time\np = json.load(sys.stdin)\ntime.sleep(p['s'])\nprint(json.dumps(p))",
    }
    await register(nc.jetstream(), layout, python_runtime(), "slow", slow)
    settings = agent_settings(nats_server, layout, tmp_path / "c1", ack_wait_s=2)
    env = agent_env(settings)
    env["FAAS_AGENT_RUNTIMES"] = "[]"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node_agent",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    call_id = secrets.token_hex(8)
    try:
        async with CallWatcher(nc, layout, call_id) as w:
            await publish(nc, layout, "python", Invocation(id=call_id, function="slow", params={"s": 4}))
            await wait_until(lambda: "started" in w.kinds(), timeout=60)
            proc.kill()  # SIGKILL: no graceful stop, the message is never acked
            await proc.wait()
            async with NodeAgent(agent_settings(nats_server, layout, tmp_path / "c2", ack_wait_s=2)):
                done = await w.finished(timeout=60)
        assert done.status == CallStatus.DONE and done.result == {"s": 4}
        assert done.attempt == 2
        assert w.kinds().count("started") == 2
    finally:
        if proc.returncode is None:
            proc.kill()
        for cid in await containers_with_label(docker, f"faas.call={call_id}"):
            await docker.containers.container(cid).delete(force=True)


async def test_a_call_that_keeps_killing_its_agent_is_dead_lettered(
    docker_ready: None,
    nats_server: NatsServer,
    nc: Client,
    layout: Layout,
    tmp_path: Path,
    docker: aiodocker.Docker,
):
    slow = {"main.py": "import time\ntime.sleep(30)\n"}
    await register(nc.jetstream(), layout, python_runtime(), "poison", slow)
    call_id = secrets.token_hex(8)
    settings = agent_settings(nats_server, layout, tmp_path / "c", ack_wait_s=1.5, max_attempts=2, runtimes=["python"])
    async with CallWatcher(nc, layout, call_id) as w:
        await publish(nc, layout, "python", Invocation(id=call_id, function="poison"))
        for attempt in (1, 2):  # each delivery kills the agent running it
            proc = await spawn_agent(settings)
            await wait_until(lambda a=attempt: w.kinds().count("started") == a, timeout=60)
            proc.kill()
            await proc.wait()
        # the third delivery only records the give-up
        async with NodeAgent(settings):
            done = await w.finished(timeout=60)
    assert done.status == CallStatus.ERROR and done.error is not None
    assert done.error.type == "TooManyAttempts" and "2 attempts" in done.error.message
    info = await nc.jetstream().stream_info(layout.invoke_stream)
    assert info.state.messages == 0  # removed from the queue, not left to loop
    for cid in await containers_with_label(docker, f"faas.call={call_id}"):
        await docker.containers.container(cid).delete(force=True)


async def test_a_bad_call_number_header_is_ignored_not_looped(agent: NodeAgent, nc: Client, layout: Layout):
    await register(nc.jetstream(), layout, python_runtime(), "echo", ECHO)
    call_id = secrets.token_hex(8)
    async with CallWatcher(nc, layout, call_id) as w:
        ack = await nc.jetstream().publish(
            layout.invoke_runtime("python"),
            encode(Invocation(id=call_id, function="echo", params={"n": 1})),
            stream=layout.invoke_stream,
            headers={"Faas-Call-Number": "abc"},
        )
        done = await w.finished()
    assert done.status == CallStatus.DONE and done.number == ack.seq and done.attempt == 1


async def test_a_start_that_fails_releases_what_it_started(
    agent: NodeAgent, nats_server: NatsServer, layout: Layout, tmp_path: Path, docker: aiodocker.Docker
) -> None:
    """A second agent with a live node's id fails to start, and leaves nothing: its Docker
    client is closed and its warm pool made no container (the session-end check and
    ResourceWarning-as-error would catch a leak too)."""
    twin = NodeAgent(
        agent_settings(nats_server, layout, tmp_path / "twin", node_id=agent.settings.node_id, policy="warm-function")
    )
    with pytest.raises(NodeIdInUse):
        await twin.start()
    assert isinstance(twin._engine, DockerEngine) and twin._engine._docker.session.closed
    assert twin.pools is None  # it failed before it had any
