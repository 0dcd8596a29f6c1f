"""One job's run against a fake engine: outcomes, cancel, timeout, shutdown; and the priority
order of the intake."""

import asyncio
from typing import Any

from common.sealing import SecretsKey
from node_agent.jobs.intake import job_subjects, levels_by_priority
from node_agent.jobs.run import Interrupt, JobControl, JobRun, RunOutcome, RunSettings
from schemas import JobContainer, JobMessage, JobSpec, JobStatus, Layout, RegistryAuth, encode
from tests.fakes.container import emits
from tests.fakes.docker import FakeEngine
from tests.fakes.publisher import FakePublisher
from tests.unit.test_jobs_logstream import LAYOUT, fake_publisher


def docker(
    output: list[tuple[int, bytes]] | None = None,
    exit_code: int = 0,
    forever: bool = False,
    pullable: set[str] | None = None,
) -> FakeEngine:
    """A Docker with the image ``img``, whose containers print ``output`` and exit (or run until removed)."""
    frames = output if output is not None else [(1, b"hello\n"), (2, b"err\n")]
    return FakeEngine(emits(frames, exit_code, forever), images={"img"}, pullable=pullable or ())


KEY = SecretsKey([SecretsKey.generate()])


def job(image: str = "img", timeout_s: float | None = None, **container: Any) -> JobMessage:
    """A job as the gateway publishes it: its secrets (if any) sealed with ``KEY``."""
    c = JobContainer(image=image, command=["sh", "-c", "true"], env={"A": "1"}, **container)
    sealed = KEY.seal(encode(c.secrets("j1"))) if c.has_secrets else None
    spec = JobSpec(name="job", container=c.without_secrets(), timeout_s=timeout_s)
    return JobMessage(id="j1", spec=spec, sealed=sealed)


async def run(
    engine: FakeEngine,
    message: JobMessage,
    control: JobControl | None = None,
    key: SecretsKey | None = KEY,
    **over: Any,
) -> tuple[RunOutcome, FakePublisher, list[str]]:
    fake = fake_publisher()
    started: list[str] = []

    async def on_started(cid: str) -> None:
        started.append(cid)

    settings = RunSettings(**{"node_id": "node-1", "cancel_grace_s": 3, "log_flush_s": 0.01, **over})
    r = JobRun(message, 5, 1, engine, fake, LAYOUT, settings, control or JobControl(), on_started, key)
    return await r.run(), fake, started


async def test_exit_0_finishes_with_its_logs_published() -> None:
    engine = docker()
    outcome, fake, started = await run(engine, job())
    assert outcome.status == JobStatus.FINISHED and outcome.container == "cid-1" and not outcome.removed
    r = outcome.result
    assert r.exit_code == 0 and r.error is None and r.gpus == []
    assert r.executed_at and r.finished_at and r.duration_ms is not None
    assert started == ["cid-1"]
    assert fake.texts() == [("stdout", "hello"), ("stderr", "err")]
    assert {c.number for c in fake.chunks()} == {5}
    [spec] = engine.created
    assert spec.labels == {"faas.job": "j1", "faas.node": "node-1"}
    assert spec.cmd == ["sh", "-c", "true"] and spec.env == {"A": "1"}
    assert engine.removed == []  # the worker removes it after the final event


async def test_nonzero_exit_is_an_error_with_the_stderr_tail() -> None:
    outcome, _, _ = await run(docker(output=[(2, b"Traceback\nboom\n")], exit_code=3), job())
    assert outcome.status == JobStatus.ERROR
    assert outcome.result.exit_code == 3
    assert outcome.result.error == "exit code 3: Traceback\nboom"


async def test_a_missing_image_is_an_error_saying_so() -> None:
    engine = docker()
    outcome, _, started = await run(engine, job(image="nope:1"))
    assert outcome.status == JobStatus.ERROR and outcome.container is None
    assert "image 'nope:1' not found" in (outcome.result.error or "")
    assert engine.created == [] and started == []


async def test_the_image_is_pulled_with_the_registry_credentials() -> None:
    engine = docker(pullable={"private/img"})
    auth = RegistryAuth(username="u", password="p")
    outcome, _, _ = await run(engine, job(image="private/img", registry_auth=auth))
    assert outcome.status == JobStatus.FINISHED
    assert engine.pulls == [("private/img", {"username": "u", "password": "p"})]


async def test_cancel_stops_the_container_with_the_grace_and_keeps_the_logs() -> None:
    engine = docker(output=[(1, b"working\n")], forever=True)
    control = JobControl()
    task = asyncio.create_task(run(engine, job(), control))
    await engine.until(lambda: engine.starts)
    control.interrupt(Interrupt.CANCELLED)
    outcome, fake, _ = await asyncio.wait_for(task, 5)
    assert outcome.status == JobStatus.CANCELLED and outcome.removed
    assert outcome.result.error == "cancelled" and outcome.result.executed_at is not None
    assert engine.removals == [("cid-1", 3)]
    assert fake.texts() == [("stdout", "working")]


async def test_timeout_ends_the_job_timeout() -> None:
    engine = docker(forever=True)
    outcome, _, _ = await run(engine, job(timeout_s=0.05))
    assert outcome.status == JobStatus.TIMEOUT and outcome.removed
    assert outcome.result.error == "timed out after 0.05s"
    assert engine.removals == [("cid-1", 3)]


async def test_a_job_without_timeout_ends_timeout_at_the_nodes_maximum() -> None:
    engine = docker(forever=True)
    outcome, _, _ = await asyncio.wait_for(run(engine, job(), max_timeout_s=0.05), 5)
    assert outcome.status == JobStatus.TIMEOUT and outcome.removed
    assert outcome.result.error == "timed out after 0.05s (the node's maximum for a job without timeout_s)"
    assert engine.removals == [("cid-1", 3)]


async def test_the_container_gets_the_jobs_resources_and_user_else_the_nodes_defaults() -> None:
    engine = docker()
    await run(engine, job(memory_mb=512, cpus=0.5, user="1000:1000"), memory_mb=256, cpus=1.0, pids_limit=64)
    await run(engine, job(), memory_mb=256, cpus=1.0, pids_limit=64)
    asked, default = engine.created
    assert (asked.memory_mb, asked.cpus, asked.pids_limit, asked.user) == (512, 0.5, 64, "1000:1000")
    assert (default.memory_mb, default.cpus, default.pids_limit, default.user) == (256, 1.0, 64, None)


async def test_a_job_over_the_nodes_maxima_ends_error_before_anything_runs() -> None:
    engine = docker()
    maxima = {"max_memory_mb": 1024, "max_cpus": 2.0, "max_timeout_s": 60.0}
    outcome, _, started = await run(engine, job(memory_mb=2048, cpus=4, timeout_s=61), **maxima)
    assert outcome.status == JobStatus.ERROR and outcome.container is None
    assert outcome.result.error == (
        "memory_mb 2048 is over this node's maximum of 1024 (FAAS_AGENT_JOB_MAX_MEMORY_MB); "
        "cpus 4 is over this node's maximum of 2 (FAAS_AGENT_JOB_MAX_CPUS); "
        "timeout_s 61 is over this node's maximum of 60 (FAAS_AGENT_JOB_MAX_TIMEOUT_S)"
    )
    assert engine.calls == [] and started == []
    at_the_maxima, _, _ = await run(engine, job(memory_mb=1024, cpus=2, timeout_s=60), **maxima)
    assert at_the_maxima.status == JobStatus.FINISHED


async def test_shutdown_hands_the_job_back() -> None:
    engine = docker(forever=True)
    control = JobControl()
    task = asyncio.create_task(run(engine, job(), control))
    await engine.until(lambda: engine.starts)
    control.interrupt(Interrupt.SHUTDOWN)
    control.interrupt(Interrupt.CANCELLED)  # the first reason wins
    outcome, _, _ = await asyncio.wait_for(task, 5)
    assert outcome.requeue and outcome.removed and control.reason is Interrupt.SHUTDOWN


def test_levels_by_priority_highest_first_and_only_non_empty() -> None:
    layout = Layout("faas")
    counts = {
        "faas.invoke.job.0": 3,
        "faas.invoke.job.9": 1,
        "faas.invoke.job.5": 0,
        "faas.invoke.job.7": 2,
        "faas.invoke.rt.python": 4,  # not a job level
        "other.invoke.job.8": 1,  # another installation's prefix
        "faas.invoke.job.12": 1,  # out of range
    }
    assert levels_by_priority(counts, layout) == [9, 7, 0]
    assert levels_by_priority(None, layout) == []
    assert job_subjects(layout) == "faas.invoke.job.*"
