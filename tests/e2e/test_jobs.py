"""Container jobs on a real Docker engine: a JobWorker built directly (as the agent does) with a
DockerEngine and a slot semaphore; jobs published as the gateway publishes them."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiodocker
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from node_agent.containers.docker import DockerEngine
from node_agent.containers.firewall import SealConfig
from node_agent.jobs.worker import JobConfig, JobWorker
from schemas import (
    JobContainer,
    JobFinished,
    JobMessage,
    JobSpec,
    JobStarted,
    JobStatus,
    Layout,
    Logs,
    decode_event,
    decode_job_event,
    encode,
)
from tests.e2e.conftest import containers_with_label, wait_until
from tests.functions import PYTHON_IMAGE

pytestmark = pytest.mark.e2e

MakeWorker = Callable[..., Awaitable[JobWorker]]


class JobEvents:
    """Every event of the given jobs, in arrival order (subscribed before they are published)."""

    def __init__(self, nc: Client, layout: Layout) -> None:
        self.nc, self.layout = nc, layout
        self.events: list[Any] = []

    async def __aenter__(self) -> "JobEvents":
        async def on_msg(msg: Msg) -> None:
            kind = msg.subject.rsplit(".", 1)[-1]
            self.events.append(decode_job_event(msg.data) if kind.startswith("job_") else decode_event(msg.data))

        self._sub = await self.nc.subscribe(self.layout.events_all, cb=on_msg)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()

    def of(self, job_id: str, kind: type) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and getattr(e, "job_id", getattr(e, "call_id", None)) == job_id
        ]

    async def finished(self, job_id: str, timeout: float = 60) -> JobFinished:
        await wait_until(lambda: self.of(job_id, JobFinished), timeout)
        event: JobFinished = self.of(job_id, JobFinished)[0]
        return event

    def lines(self, job_id: str) -> list[tuple[str, str]]:
        chunks = sorted(self.of(job_id, Logs), key=lambda c: (c.attempt, c.seq))
        return [(line.stream, line.text) for c in chunks for line in c.lines]

    def started_order(self) -> list[str]:
        return [e.job_id for e in self.events if isinstance(e, JobStarted)]


async def submit(nc: Client, layout: Layout, command: list[str], priority: int = 5, **spec: Any) -> str:
    image = spec.pop("image", PYTHON_IMAGE)
    job_id = "j" + secrets.token_hex(6)
    message = JobMessage(
        id=job_id,
        spec=JobSpec(name="e2e", priority=priority, container=JobContainer(image=image, command=command), **spec),
        created_at=datetime.now(UTC),
    )
    await nc.jetstream().publish(
        layout.invoke_job(priority), encode(message), stream=layout.invoke_stream, headers={"Nats-Msg-Id": job_id}
    )
    return job_id


async def cancel(nc: Client, layout: Layout, job_id: str) -> None:
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    await kv.put(job_id, datetime.now(UTC).isoformat().encode())


async def queued_jobs(nc: Client, layout: Layout) -> int:
    info = await nc.jetstream().stream_info(layout.invoke_stream, subjects_filter=f"{layout.prefix}.invoke.job.*")
    return sum((info.state.subjects or {}).values())


@pytest.fixture
async def make_worker(docker_ready: None, nc: Client, layout: Layout) -> AsyncIterator[MakeWorker]:
    engine = DockerEngine()
    await engine.seal_network(SealConfig())  # jobs have network access: sealed, as the agent does
    workers: list[JobWorker] = []

    async def make(slots: asyncio.Semaphore | None = None, **over: Any) -> JobWorker:
        values: dict[str, Any] = dict(
            node_id="n" + secrets.token_hex(3), grace_s=5, cancel_grace_s=1, ack_wait_s=5, poll_s=0.2
        )
        values.update(over)
        worker = JobWorker(JobConfig(**values), slots or asyncio.Semaphore(4), nc, layout, engine)
        await worker.start()
        workers.append(worker)
        return worker

    yield make
    for w in workers:
        await w.stop()
    await engine.close()


async def test_a_job_runs_and_both_streams_reach_its_log_events(
    make_worker: MakeWorker, nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    await make_worker()
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["sh", "-c", "echo hello; echo err >&2; exit 0"])
        done = await events.finished(job_id)
    assert done.status == JobStatus.FINISHED, done
    assert done.result.exit_code == 0 and done.result.error is None and done.result.gpus == []
    assert done.result.executed_at and done.result.finished_at and done.result.duration_ms is not None
    [started] = events.of(job_id, JobStarted)
    assert started.container and started.node == done.node
    assert ("stdout", "hello") in events.lines(job_id) and ("stderr", "err") in events.lines(job_id)
    assert events.events.index(started) < events.events.index(done)
    await wait_until(lambda: _none_left(docker, job_id), 10)
    assert await queued_jobs(nc, layout) == 0  # acked


async def test_a_failing_command_is_an_error_with_its_exit_code(
    make_worker: MakeWorker, nc: Client, layout: Layout
) -> None:
    await make_worker()
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["sh", "-c", "echo broken >&2; exit 4"])
        done = await events.finished(job_id)
    assert done.status == JobStatus.ERROR
    assert done.result.exit_code == 4 and done.result.error == "exit code 4: broken"


async def test_a_missing_image_ends_in_error_saying_so(make_worker: MakeWorker, nc: Client, layout: Layout) -> None:
    await make_worker()
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["true"], image="faas-no-such-image-" + secrets.token_hex(3) + ":never")
        done = await events.finished(job_id)
    assert done.status == JobStatus.ERROR
    assert "not found" in (done.result.error or ""), done.result.error
    assert events.of(job_id, JobStarted) == []


async def test_a_running_job_is_cancelled_within_the_grace_and_keeps_its_logs(
    make_worker: MakeWorker, nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    await make_worker(cancel_grace_s=1)
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["sh", "-c", "echo started; sleep 60"])
        await wait_until(lambda: ("stdout", "started") in events.lines(job_id), 30)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await cancel(nc, layout, job_id)
        done = await events.finished(job_id, timeout=15)
        elapsed = loop.time() - t0
    assert done.status == JobStatus.CANCELLED
    assert elapsed < 1 + 5, elapsed  # the grace (sh as PID 1 ignores SIGTERM) plus teardown
    assert ("stdout", "started") in events.lines(job_id)
    assert await containers_with_label(docker, f"faas.job={job_id}") == []
    assert await queued_jobs(nc, layout) == 0


async def test_a_job_cancelled_while_queued_never_starts(make_worker: MakeWorker, nc: Client, layout: Layout) -> None:
    slots = asyncio.Semaphore(1)
    await slots.acquire()  # the node is busy: the job stays queued
    await make_worker(slots=slots)
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["sh", "-c", "echo should not run"])
        await cancel(nc, layout, job_id)
        slots.release()
        done = await events.finished(job_id)
        await wait_until(lambda: _queue_empty(nc, layout), 10)
    assert done.status == JobStatus.CANCELLED
    assert events.of(job_id, JobStarted) == [] and events.lines(job_id) == []


async def test_with_the_slot_busy_the_higher_priority_job_starts_first(
    make_worker: MakeWorker, nc: Client, layout: Layout
) -> None:
    slots = asyncio.Semaphore(1)
    await slots.acquire()
    await make_worker(slots=slots)
    async with JobEvents(nc, layout) as events:
        low = await submit(nc, layout, ["true"], priority=1)
        mid = await submit(nc, layout, ["true"], priority=4)
        high = await submit(nc, layout, ["true"], priority=8)
        slots.release()
        for job_id in (low, mid, high):
            assert (await events.finished(job_id)).status == JobStatus.FINISHED
    assert events.started_order() == [high, mid, low]


async def test_stop_hands_a_running_job_back_to_the_queue(
    make_worker: MakeWorker, nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    worker = await make_worker(grace_s=0.2, cancel_grace_s=0)
    async with JobEvents(nc, layout) as events:
        job_id = await submit(nc, layout, ["sleep", "60"])
        await wait_until(lambda: events.of(job_id, JobStarted), 30)
        await asyncio.wait_for(worker.stop(), 15)
    assert events.of(job_id, JobFinished) == []
    assert await containers_with_label(docker, f"faas.job={job_id}") == []
    assert await queued_jobs(nc, layout) == 1  # not acked: another node will run it


async def _none_left(docker: aiodocker.Docker, job_id: str) -> bool:
    return await containers_with_label(docker, f"faas.job={job_id}") == []


async def _queue_empty(nc: Client, layout: Layout) -> bool:
    return await queued_jobs(nc, layout) == 0
