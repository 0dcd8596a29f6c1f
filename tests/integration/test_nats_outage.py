"""A NATS outage is a pause, not a crash: the real nats-server is stopped and started again
(same port, same store) under a node agent (fake Docker) and a gateway. The agent's call
that runs meanwhile finishes and is recorded once NATS is back, its heartbeat comes back and
its side tasks are still alive; the gateway answers 503 with Retry-After while NATS is away,
200 after. A node's consumer deleted while it was away (taken for dead) is made again by
its pull loop, and a call routed to it runs. A job that ends during an outage is recorded
after it, on its first attempt. Every wait has a deadline."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.jobs.worker import JobWorker
from node_agent.settings import AgentSettings
from schemas import CallStatus, Finished, Invocation, JobStatus, Layout, decode, encode
from schemas.clock import utcnow
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.fakes.runtime import function_image
from tests.functions import PYTHON_IMAGE, python_runtime, register
from tests.integration.test_agent_lifecycle import wait_for_entry
from tests.integration.test_gateway_support import running_gateway, wait_until
from tests.integration.test_job_worker import config as job_config
from tests.integration.test_job_worker import finished as job_finished
from tests.integration.test_job_worker import queued, submit
from tests.natsusers import service_settings

RUNTIME = python_runtime()
CODE = {"main.py": "print('[6]')\n"}
# Longer than a publish's PubAck timeout (5 s): what ends early in it must wait for NATS.
OUTAGE_S = 7.0
DEADLINE_S = 20.0


class Gate:
    """The fake container's program: a call with ``{"wait": true}`` runs until ``open()``."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self._open = asyncio.Event()

    def open(self) -> None:
        self._open.set()

    async def program(self, p: Process) -> int:
        params = json.loads(await p.read())
        if params.get("wait"):
            self.running.set()
            await self._open.wait()
        await p.out(b"[6]\n")
        return 0


def agent_settings(server: NatsServer, layout: Layout, tmp_path: Path, node: str) -> AgentSettings:
    return AgentSettings(
        **service_settings(server, "agent"),
        prefix=layout.prefix,
        node_id=node,
        runtimes=[RUNTIME.name],
        policy="none",
        handler_sockets=False,
        network_seal=False,
        heartbeat_s=0.2,
        fetch_timeout_s=0.5,
        grace_s=1.0,
        metrics_port=0,
        cache_dir=tmp_path / node,
    )


@pytest.fixture
async def gate() -> Gate:
    return Gate()


@pytest.fixture
async def agent(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path, gate: Gate
) -> AsyncIterator[NodeAgent]:
    await register(nc.jetstream(), layout, RUNTIME, "dice", CODE)
    engine = FakeEngine(function_image(command=gate.program), images={PYTHON_IMAGE})
    async with NodeAgent(agent_settings(nats_server, layout, tmp_path, "n1"), engine=engine) as node:
        await wait_for_entry(nc, layout, "n1")
        yield node
    await engine.close()


async def invoke(nc: Client, subject: str, call_id: str, params: dict[str, object]) -> None:
    inv = Invocation(id=call_id, function="dice", params=params, created_at=utcnow())
    await nc.jetstream().publish(subject, encode(inv))


async def finished(nc: Client, layout: Layout, call_id: str, timeout: float = DEADLINE_S) -> Finished:
    js = nc.jetstream()

    async def stored() -> bool:
        try:
            await js.get_last_msg(layout.events_stream, layout.event(call_id, "finished"))
        except NotFoundError:
            return False
        return True

    await wait_until(stored, timeout, f"the finished event of {call_id}")
    msg = await js.get_last_msg(layout.events_stream, layout.event(call_id, "finished"))
    return decode(Finished, msg.data or b"")


async def test_an_agent_keeps_its_running_call_through_an_outage_and_resumes(
    agent: NodeAgent, nats_server: NatsServer, nc: Client, layout: Layout, gate: Gate
) -> None:
    await invoke(nc, layout.invoke_runtime(RUNTIME.name), "during", {"wait": True})
    async with asyncio.timeout(DEADLINE_S):
        await gate.running.wait()
    await nats_server.stop()
    # Heartbeats (every 0.2 s) and pull requests fail for the whole outage; the call ends
    # early in it, so that its finished event waits for NATS longer than a publish's timeout.
    await asyncio.sleep(0.5)
    gate.open()
    await asyncio.sleep(OUTAGE_S - 0.5)
    assert not agent.tasks.failed.is_set(), agent.tasks.failure
    await nats_server.start()

    event = await finished(nc, layout, "during")
    assert event.status == CallStatus.DONE and event.result == [6] and event.attempt == 1
    await wait_for_entry(nc, layout, "n1")  # the heartbeat is back
    await invoke(nc, layout.invoke_runtime(RUNTIME.name), "after", {})
    assert (await finished(nc, layout, "after")).status == CallStatus.DONE
    assert not agent.tasks.failed.is_set(), agent.tasks.failure
    # The first call was acked once its event was stored: nothing is left to redeliver.
    info = await nc.jetstream().consumer_info(layout.invoke_stream, layout.runtime_consumer(RUNTIME.name))
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_a_deleted_node_consumer_is_made_again_and_its_routed_call_runs(
    agent: NodeAgent, nc: Client, layout: Layout
) -> None:
    js = nc.jetstream()
    durable = layout.node_consumer("n1")
    await js.delete_consumer(layout.invoke_stream, durable)  # as a rescue of a node taken for dead does
    await invoke(nc, layout.invoke_node("n1"), "routed", {})
    event = await finished(nc, layout, "routed")
    assert event.status == CallStatus.DONE and event.node == "n1"
    assert (await js.consumer_info(layout.invoke_stream, durable)).config.filter_subject == layout.invoke_node("n1")


async def test_an_agent_that_follows_the_runtimes_serves_one_registered_after_an_outage(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path, gate: Gate
) -> None:
    engine = FakeEngine(function_image(command=gate.program), images={PYTHON_IMAGE})
    settings = agent_settings(nats_server, layout, tmp_path, "n2").model_copy(update={"runtimes": []})
    async with NodeAgent(settings, engine=engine) as node:
        await wait_for_entry(nc, layout, "n2")
        await nats_server.stop()
        await asyncio.sleep(1.0)
        await nats_server.start()
        late = python_runtime("late")
        await register(nc.jetstream(), layout, late, "dice", CODE)
        await invoke(nc, layout.invoke_runtime("late"), "late-call", {})
        # the runtimes watch comes back by itself (nats-py remakes it after missed heartbeats)
        assert (await finished(nc, layout, "late-call", timeout=30)).status == CallStatus.DONE
        assert "late" in node.state().runtimes and not node.tasks.failed.is_set()
    await engine.close()


async def test_the_gateway_answers_503_while_nats_is_away_and_200_after(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    async with running_gateway(nats_server, layout) as (gw, http):
        async with http.get("/v1/runtimes") as r:
            assert r.status == 200
        await nats_server.stop()
        await wait_until(lambda: _status(http, "/healthz", 503), DEADLINE_S, "healthz 503")
        for method, path in (("GET", "/v1/runtimes"), ("POST", "/invokeFunction")):
            async with http.request(method, path, json={"funcName": "dice", "params": {}}) as r:
                assert r.status == 503, await r.text()
                assert r.headers["Retry-After"] == "2"
                body = await r.json()
                assert body["error"]["code"] == "unavailable" and "NATS" in body["error"]["message"]
        # The dashboard's files need no NATS: its pages load, and show the API's 503s.
        for path in ("/ui/", "/ui/js/main.js", "/docs", "/openapi.json"):
            async with http.get(path) as r:
                assert r.status == 200, path
        await nats_server.start()
        await wait_until(lambda: _status(http, "/v1/runtimes", 200), DEADLINE_S, "200 after the outage")
        assert not gw.tasks.failed.is_set(), gw.tasks.failure


async def _status(http: aiohttp.ClientSession, path: str, want: int) -> bool:
    async with http.get(path) as r:
        return r.status == want


async def test_a_job_that_ends_during_an_outage_is_recorded_after_it_on_its_first_attempt(
    nats_server: NatsServer, layout: Layout, nc: Client, agent_nc: Client
) -> None:
    ends = asyncio.Event()

    async def job(p: Process) -> int:
        await ends.wait()
        return 0

    engine = FakeEngine(job, images={"img"})
    worker = JobWorker(job_config(patience_s=60), asyncio.Semaphore(1), agent_nc, layout, engine)
    await worker.start(intake=False)
    try:
        job_id = await submit(nc, layout, 5)
        running = asyncio.create_task(worker.run_until_idle())
        await engine.until(lambda: engine.starts, timeout=DEADLINE_S)
        await nats_server.stop()
        await asyncio.sleep(0.5)
        ends.set()  # early in the outage: its final event waits longer than a publish's timeout
        await asyncio.sleep(OUTAGE_S - 0.5)
        await nats_server.start()
        assert await asyncio.wait_for(running, DEADLINE_S) == 1
        event = await job_finished(nc, layout, job_id)
        assert event.status == JobStatus.FINISHED
        msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, "job_finished"))
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == f"{job_id}.job_finished.1"
        # and acked once its event was stored: not left to be redelivered and run again
        assert await queued(nc, layout) == 0
    finally:
        await worker.stop()
