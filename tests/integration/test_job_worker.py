"""The job worker on a real nats-server with a fake container engine: the priority intake's
no-wait pulls (highest level first, no pull request left open), the give-up of a job
delivered too often, and the keepalive that keeps a long job from being redelivered."""

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client

from common.pull import PullConsumer
from node_agent.jobs.worker import JobConfig, JobWorker
from schemas import JobContainer, JobFinished, JobMessage, JobSpec, JobStatus, Layout, decode_job_event, dedup, encode
from schemas.jobs import MAX_PRIORITY, MIN_PRIORITY
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine


def make_engine(run_s: float = 0.0) -> FakeEngine:
    """Job containers whose program runs for ``run_s`` seconds, then exits 0."""

    async def program(p: Process) -> int:
        await asyncio.sleep(run_s)
        return 0

    return FakeEngine(program, images={"img"})


def config(**over: Any) -> JobConfig:
    values: dict[str, Any] = dict(node_id="n" + secrets.token_hex(3), grace_s=5, cancel_grace_s=1, poll_s=0.2)
    values.update(over)
    return JobConfig(**values)


async def submit(nc: Client, layout: Layout, priority: int) -> str:
    job_id = "j" + secrets.token_hex(6)
    spec = JobSpec(name="job", priority=priority, container=JobContainer(image="img", command=["true"]))
    message = JobMessage(id=job_id, spec=spec, created_at=datetime.now(UTC))
    await nc.jetstream().publish(
        layout.invoke_job(priority), encode(message), stream=layout.invoke_stream, headers=dedup.header(job_id)
    )
    return job_id


async def finished(nc: Client, layout: Layout, job_id: str) -> JobFinished:
    msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, "job_finished"))
    event = decode_job_event(msg.data or b"")
    assert isinstance(event, JobFinished)
    return event


async def queued(nc: Client, layout: Layout) -> int:
    info = await nc.jetstream().stream_info(layout.invoke_stream, subjects_filter=f"{layout.prefix}.invoke.job.*")
    return sum((info.state.subjects or {}).values())


async def test_jobs_are_taken_highest_priority_first_without_leaving_pull_requests(
    nc: Client, layout: Layout, agent_nc: Client
) -> None:
    engine = make_engine()
    worker = JobWorker(config(), asyncio.Semaphore(1), agent_nc, layout, engine)
    await worker.start(intake=False)
    try:
        ids = {p: await submit(nc, layout, p) for p in (1, 7, 3)}
        assert await asyncio.wait_for(worker.run_until_idle(), 30) == 3
        assert [spec.labels["faas.job"] for spec in engine.created] == [ids[7], ids[3], ids[1]]
        for job_id in ids.values():
            assert (await finished(nc, layout, job_id)).status == JobStatus.FINISHED
        assert await queued(nc, layout) == 0  # acked: off the work queue
        js = nc.jetstream()
        for p in range(MIN_PRIORITY, MAX_PRIORITY + 1):
            info = await js.consumer_info(layout.invoke_stream, layout.job_consumer(p))
            assert info.num_waiting == 0, p  # no pull request lingers on any level
    finally:
        await worker.stop()


async def test_burst_mode_waits_out_a_nats_request_that_timed_out(nc: Client, layout: Layout, agent_nc: Client) -> None:
    engine = make_engine()
    worker = JobWorker(config(), asyncio.Semaphore(1), agent_nc, layout, engine)
    await worker.start(intake=False)
    real = worker._intake.waiting_levels
    failures = [nats.errors.TimeoutError()]  # as right after a server restart

    async def flaky() -> list[int]:
        if failures:
            raise failures.pop()
        return await real()

    worker._intake.waiting_levels = flaky  # type: ignore[method-assign]
    try:
        job_id = await submit(nc, layout, 5)
        assert await asyncio.wait_for(worker.run_until_idle(), 30) == 1
        assert not failures and (await finished(nc, layout, job_id)).status == JobStatus.FINISHED
    finally:
        await worker.stop()


async def test_a_job_delivered_more_than_max_attempts_times_is_given_up(
    nc: Client, layout: Layout, agent_nc: Client
) -> None:
    engine = make_engine()
    worker = JobWorker(config(max_attempts=1), asyncio.Semaphore(1), agent_nc, layout, engine)
    await worker.start(intake=False)
    try:
        job_id = await submit(nc, layout, 5)
        # a first delivery that never finished (its agent died): handed back
        other = await PullConsumer.bind(nc, layout.invoke_stream, layout.job_consumer(5))
        first = await asyncio.wait_for(other.next_now(), 5)
        assert first is not None
        await first.nak()
        await other.close()

        assert await asyncio.wait_for(worker.run_until_idle(), 30) == 1
        event = await finished(nc, layout, job_id)
        assert event.status == JobStatus.ERROR
        assert event.result.error == "gave up after 1 attempts without completing"
        assert engine.created == []  # never run
        assert await queued(nc, layout) == 0
        msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, "job_finished"))
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == f"{job_id}.job_finished.2"
    finally:
        await worker.stop()


async def test_a_job_running_past_its_ack_wait_is_kept_alive_not_redelivered(
    nc: Client, layout: Layout, agent_nc: Client
) -> None:
    engine = make_engine(run_s=2.5)  # ack wait 1 s: beats every 0.5 s
    worker = JobWorker(config(ack_wait_s=1), asyncio.Semaphore(1), agent_nc, layout, engine)
    await worker.start(intake=False)
    other = await PullConsumer.bind(nc, layout.invoke_stream, layout.job_consumer(2))
    try:
        job_id = await submit(nc, layout, 2)
        running = asyncio.create_task(worker.run_until_idle())
        await engine.until(lambda: engine.starts, timeout=10)
        # another agent asking all along: a job not kept alive would be redelivered to it
        assert await other.fetch(1, timeout=2.0) == []
        assert await asyncio.wait_for(running, 30) == 1
        assert (await finished(nc, layout, job_id)).status == JobStatus.FINISHED
        info = await nc.jetstream().consumer_info(layout.invoke_stream, layout.job_consumer(2))
        assert info.num_redelivered == 0 and len(engine.created) == 1
    finally:
        await other.close()
        await worker.stop()
