"""One job's run against a fake engine: outcomes, cancel, timeout, shutdown; and the priority
order of the intake."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from node_agent.containers.docker import ContainerSpec, ExitState
from node_agent.errors import EngineError
from node_agent.jobs.intake import job_subjects, levels_by_priority
from node_agent.jobs.run import Interrupt, JobControl, JobRun, RunOutcome, RunSettings
from schemas import JobContainer, JobMessage, JobSpec, JobStatus, Layout, RegistryAuth
from tests.unit.test_jobs_logstream import LAYOUT, FakePublisher


class FakeEngine:
    def __init__(
        self,
        output: list[tuple[int, bytes]] | None = None,
        exit_code: int = 0,
        forever: bool = False,
        images: set[str] | None = None,
        pullable: set[str] | None = None,
    ) -> None:
        self.output = output if output is not None else [(1, b"hello\n"), (2, b"err\n")]
        self.exit_code = exit_code
        self.forever = forever
        self.images = images if images is not None else {"img"}
        self.pullable = pullable or set()
        self.pulls: list[tuple[str, dict[str, str] | None]] = []
        self.created: list[ContainerSpec] = []
        self.removed: list[tuple[str, float]] = []
        self.started = asyncio.Event()
        self._exited = asyncio.Event()

    async def image_exists(self, image: str) -> bool:
        return image in self.images

    async def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        self.pulls.append((image, auth))
        if image not in self.pullable:
            raise EngineError(f"pulling {image!r} failed: manifest unknown")
        self.images.add(image)

    async def create_job(self, spec: ContainerSpec) -> str:
        self.created.append(spec)
        return "cid-1"

    async def start(self, cid: str) -> None:
        self.started.set()

    async def wait(self, cid: str) -> int:
        if self.forever:
            await self._exited.wait()
            return 137
        return self.exit_code

    async def exit_state(self, cid: str) -> ExitState:
        return ExitState(self.exit_code, oom_killed=False)

    async def follow_output(self, cid: str, follow: bool = True) -> AsyncIterator[tuple[int, bytes]]:
        for frame in self.output:
            yield frame
        if self.forever:
            await self._exited.wait()

    async def remove(self, cid: str, grace_s: float = 0) -> None:
        self.removed.append((cid, grace_s))
        self._exited.set()


def job(image: str = "img", timeout_s: float | None = None, **container: Any) -> JobMessage:
    spec = JobSpec(
        name="job",
        container=JobContainer(image=image, command=["sh", "-c", "true"], env={"A": "1"}, **container),
        timeout_s=timeout_s,
    )
    return JobMessage(id="j1", spec=spec)


async def run(
    engine: FakeEngine, message: JobMessage, control: JobControl | None = None
) -> tuple[RunOutcome, FakePublisher, list[str]]:
    fake = FakePublisher()
    started: list[str] = []

    async def on_started(cid: str) -> None:
        started.append(cid)

    settings = RunSettings(node_id="node-1", cancel_grace_s=3, log_flush_s=0.01)
    r = JobRun(message, 5, 1, engine, fake, LAYOUT, settings, control or JobControl(), on_started)
    return await r.run(), fake, started


async def test_exit_0_finishes_with_its_logs_published() -> None:
    engine = FakeEngine()
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
    outcome, _, _ = await run(FakeEngine(output=[(2, b"Traceback\nboom\n")], exit_code=3), job())
    assert outcome.status == JobStatus.ERROR
    assert outcome.result.exit_code == 3
    assert outcome.result.error == "exit code 3: Traceback\nboom"


async def test_a_missing_image_is_an_error_saying_so() -> None:
    engine = FakeEngine()
    outcome, _, started = await run(engine, job(image="nope:1"))
    assert outcome.status == JobStatus.ERROR and outcome.container is None
    assert "image 'nope:1' not found" in (outcome.result.error or "")
    assert engine.created == [] and started == []


async def test_the_image_is_pulled_with_the_registry_credentials() -> None:
    engine = FakeEngine(pullable={"private/img"})
    auth = RegistryAuth(username="u", password="p")
    outcome, _, _ = await run(engine, job(image="private/img", registry_auth=auth))
    assert outcome.status == JobStatus.FINISHED
    assert engine.pulls == [("private/img", {"username": "u", "password": "p"})]


async def test_cancel_stops_the_container_with_the_grace_and_keeps_the_logs() -> None:
    engine = FakeEngine(output=[(1, b"working\n")], forever=True)
    control = JobControl()
    task = asyncio.create_task(run(engine, job(), control))
    await asyncio.wait_for(engine.started.wait(), 5)
    control.interrupt(Interrupt.CANCELLED)
    outcome, fake, _ = await asyncio.wait_for(task, 5)
    assert outcome.status == JobStatus.CANCELLED and outcome.removed
    assert outcome.result.error == "cancelled" and outcome.result.executed_at is not None
    assert engine.removed == [("cid-1", 3)]
    assert fake.texts() == [("stdout", "working")]


async def test_timeout_is_an_error() -> None:
    engine = FakeEngine(forever=True)
    outcome, _, _ = await run(engine, job(timeout_s=0.05))
    assert outcome.status == JobStatus.ERROR and outcome.removed
    assert outcome.result.error == "timed out after 0.05s"
    assert engine.removed == [("cid-1", 3)]


async def test_shutdown_hands_the_job_back() -> None:
    engine = FakeEngine(forever=True)
    control = JobControl()
    task = asyncio.create_task(run(engine, job(), control))
    await asyncio.wait_for(engine.started.wait(), 5)
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
