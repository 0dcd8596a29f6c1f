"""Running one container job: secrets -> image -> create -> start -> live logs -> wait -> outcome.

The job's sealed secrets are opened first (``jobs/secrets.py``): registry credentials go to
the pull, ``secret_env`` to the container's environment, and nowhere else; the output and
every error message of the run are masked.

The run can be interrupted at any point: by a cancel (ends ``CANCELLED``), by the worker
stopping (the job is handed back to the queue), or by its ``timeout_s`` (``TIMEOUT``); a job
without one gets the node's maximum, so that none holds a slot forever. A job asking for more
memory, CPU or time than the node allows ends ``ERROR`` saying so, before anything runs.
A container it created is always torn down by the engine's one teardown, ``remove``.
"""

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from common.jspub import Publishes
from common.logs import fields
from common.sealing import SecretsKey
from node_agent.containers.config import ContainerSpec
from node_agent.containers.docker import ExitState
from node_agent.errors import AgentError, ImageNotFound
from node_agent.jobs.secrets import Redactor, open_secrets
from node_agent.logstream import LogPublisher
from node_agent.outcome import STDERR_TAIL
from schemas import JobMaxima, JobMessage, JobResult, JobStatus, Layout, over_maxima

log = logging.getLogger(__name__)

T = TypeVar("T")

# After the container exited, how long its last output may take to arrive.
_LOG_DRAIN_S = 5.0


class JobEngine(Protocol):
    """What a job needs from the container engine (``DockerEngine``; fakes in unit tests)."""

    async def image_exists(self, image: str) -> bool: ...
    async def pull(self, image: str, auth: dict[str, str] | None = None) -> None: ...
    async def create_job(self, spec: ContainerSpec) -> str: ...
    async def start(self, cid: str) -> None: ...
    async def wait(self, cid: str) -> int: ...
    async def exit_state(self, cid: str) -> ExitState: ...
    def follow_output(self, cid: str, follow: bool = True) -> AsyncIterator[tuple[int, bytes]]: ...
    async def remove(self, cid: str, grace_s: float = 0) -> None: ...


class Interrupt(StrEnum):
    CANCELLED = "cancelled"  # a cancel request: the job ends CANCELLED
    SHUTDOWN = "shutdown"  # the worker is stopping: the job goes back to the queue


class JobControl:
    """The stop requests of one running job; the first reason wins."""

    def __init__(self) -> None:
        self.reason: Interrupt | None = None
        self._event = asyncio.Event()

    def interrupt(self, reason: Interrupt) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    async def wait(self) -> Interrupt:
        await self._event.wait()
        assert self.reason is not None
        return self.reason


class _Interrupted(Exception):
    def __init__(self, reason: Interrupt) -> None:
        self.reason = reason


def _cores() -> float:
    return float(os.cpu_count() or 1)


@dataclass(frozen=True)
class RunSettings:
    """How a job's container runs on this node: the resources of a job that asks for none,
    and the most one may ask for (``max_*``)."""

    node_id: str
    # A cancelled (or timed out) job's container gets this long between SIGTERM and SIGKILL.
    cancel_grace_s: float = 10.0
    memory_mb: int = 2048
    cpus: float = 1.0
    pids_limit: int = 4096
    network: bool = True
    max_log_bytes: int = 8 << 20
    log_flush_s: float = 0.1
    max_memory_mb: int = 8192
    max_cpus: float = field(default_factory=_cores)
    # The timeout of a job without timeout_s, and the longest one may ask for.
    max_timeout_s: float = 3600.0

    @property
    def maxima(self) -> JobMaxima:
        return JobMaxima(memory_mb=self.max_memory_mb, cpus=self.max_cpus, timeout_s=self.max_timeout_s)


@dataclass
class RunOutcome:
    status: JobStatus
    result: JobResult = field(default_factory=JobResult)
    container: str | None = None
    # The worker is stopping: not finished, the message goes back to the queue.
    requeue: bool = False
    # The container is gone already (stopped and deleted by an interrupt or a timeout).
    removed: bool = False


class JobRun:
    def __init__(
        self,
        job: JobMessage,
        number: int,
        attempt: int,
        engine: JobEngine,
        js: Publishes,
        layout: Layout,
        settings: RunSettings,
        control: JobControl,
        on_started: Callable[[str], Awaitable[None]],
        secrets_key: SecretsKey | None = None,
    ) -> None:
        self.job = job
        self.number = number
        self.attempt = attempt
        self._engine = engine
        self._js = js
        self._layout = layout
        self._s = settings
        self._control = control
        self._on_started = on_started
        self._key = secrets_key
        self._redact = Redactor(())

    async def run(self) -> RunOutcome:
        """Never raises for a job's own failure (those are outcomes); the container, if one was
        created, is in ``outcome.container`` for the caller to remove after the final event."""
        if refusal := self._over_maxima():
            return _error(refusal)
        try:
            secrets = open_secrets(self.job, self._key)
        except AgentError as err:
            log.warning("job.secrets_unavailable", extra=fields(job=self.job.id, error=str(err)))
            return _error(str(err))
        self._redact = Redactor(secrets.values())
        try:
            await self._interruptible(self._ensure_image(secrets.registry_auth), "pull")
            cid = await self._engine.create_job(self._container_spec(secrets.env))
        except _Interrupted as stop:
            return self._interrupted(stop.reason, None)
        except AgentError as err:
            return _error(self._redact(str(err)))
        try:
            return await self._run_container(cid)
        except AgentError as err:
            return _error(self._redact(str(err)), container=cid)
        except BaseException:
            await self._engine.remove(cid)
            raise

    # --- steps ------------------------------------------------------------------------------
    def _over_maxima(self) -> str | None:
        """Why this node cannot run the job as asked, or None."""
        over = over_maxima(self.job.spec, self._s.maxima)
        return (
            "; ".join(
                f"{name} {value:g} is over this node's maximum of {most:g} (FAAS_AGENT_JOB_MAX_{name.upper()})"
                for name, value, most in over
            )
            or None
        )

    @property
    def timeout_s(self) -> float:
        return self.job.spec.timeout_s or self._s.max_timeout_s

    async def _ensure_image(self, auth: dict[str, str] | None) -> None:
        c = self.job.spec.container
        if await self._engine.image_exists(c.image):
            return
        log.info("job.pull", extra=fields(job=self.job.id, image=c.image, auth=auth is not None))
        try:
            await self._engine.pull(c.image, auth)
        except AgentError as err:
            # Registries may echo what they were sent: the message is masked.
            reason = self._redact(str(err))
            raise ImageNotFound(
                f"image {c.image!r} not found: not on this node and the pull failed: {reason}"
            ) from None

    def _container_spec(self, secret_env: dict[str, str]) -> ContainerSpec:
        c = self.job.spec.container
        s = self._s
        return ContainerSpec(
            image=c.image,
            cmd=list(c.command),
            env={**c.env, **secret_env},
            labels={"faas.job": self.job.id, "faas.node": s.node_id},
            memory_mb=c.memory_mb or s.memory_mb,
            cpus=c.cpus or s.cpus,
            pids_limit=s.pids_limit,
            network=s.network,
            user=c.user,
        )

    async def _run_container(self, cid: str) -> RunOutcome:
        spec = self.job.spec
        await self._engine.start(cid)
        executed_at, t0 = datetime.now(UTC), time.perf_counter()
        await self._on_started(cid)
        logs = LogPublisher(
            self._js,
            self._layout,
            self.job.id,
            self.attempt,
            self._s.max_log_bytes,
            number=self.number,
            flush_interval_s=self._s.log_flush_s,
            keep_stderr=STDERR_TAIL,
            redact=self._redact or None,
        )
        pump = asyncio.create_task(logs.consume(self._engine.follow_output(cid)), name=f"job:{self.job.id}:logs")
        try:
            try:
                code = await self._interruptible(self._engine.wait(cid), "wait", timeout_s=self.timeout_s)
                stop: Interrupt | None = None
            except _Interrupted as interrupted:
                stop, code = interrupted.reason, None
            except TimeoutError:
                stop, code = None, None
            if code is None:
                # Cancel, shutdown or timeout: the one teardown (SIGTERM, grace, SIGKILL, delete).
                await self._engine.remove(cid, self._s.cancel_grace_s)
            await _drain(pump, self.job.id)
        finally:
            # Also on an engine failure: no output task outlives the run, what was read is published.
            if not pump.done():
                pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await logs.close()
        result = JobResult(
            executed_at=executed_at,
            finished_at=datetime.now(UTC),
            duration_ms=round((time.perf_counter() - t0) * 1000, 1),
            exit_code=code,
        )
        if stop is not None:
            outcome = self._interrupted(stop, cid)
            outcome.result = result.model_copy(update={"error": outcome.result.error})
            outcome.removed = True
            return outcome
        if code is None:
            result.error = f"timed out after {self.timeout_s:g}s"
            if spec.timeout_s is None:
                result.error += " (the node's maximum for a job without timeout_s)"
            return RunOutcome(JobStatus.TIMEOUT, result, cid, removed=True)
        if code == 0:
            return RunOutcome(JobStatus.FINISHED, result, cid)
        result.error = await self._exit_error(cid, code, logs.stderr_tail)
        return RunOutcome(JobStatus.ERROR, result, cid)

    async def _exit_error(self, cid: str, code: int, stderr_tail: bytes) -> str:
        try:
            oom = (await self._engine.exit_state(cid)).oom_killed
        except Exception:  # the container may be gone; the exit code says enough
            oom = False
        head = f"exit code {code}" + (" (out of memory)" if oom else "")
        tail = self._redact(stderr_tail.decode("utf-8", errors="replace").strip())
        return f"{head}: {tail}" if tail else head

    # --- interrupts -------------------------------------------------------------------------
    async def _interruptible(self, step: Awaitable[T], what: str, timeout_s: float | None = None) -> T:
        """``step``, unless a stop request comes first (raises ``_Interrupted``) or ``timeout_s``
        passes (``TimeoutError``); the step is cancelled either way."""
        task: asyncio.Task[T] = asyncio.ensure_future(step)
        stop = asyncio.create_task(self._control.wait(), name=f"job:{self.job.id}:{what}:stop")
        try:
            done, _ = await asyncio.wait({task, stop}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, stop, return_exceptions=True)
        if task in done:
            return task.result()
        if stop in done:
            raise _Interrupted(stop.result())
        raise TimeoutError

    def _interrupted(self, reason: Interrupt, cid: str | None) -> RunOutcome:
        if reason is Interrupt.SHUTDOWN:
            return RunOutcome(JobStatus.QUEUED, container=cid, requeue=True)
        return RunOutcome(JobStatus.CANCELLED, JobResult(finished_at=datetime.now(UTC), error="cancelled"), cid)


def _error(message: str, container: str | None = None) -> RunOutcome:
    return RunOutcome(JobStatus.ERROR, JobResult(finished_at=datetime.now(UTC), error=message), container)


async def _drain(pump: "asyncio.Task[Any]", job_id: str) -> None:
    """The output stream ends when the container exits; bounded, in case the engine hangs."""
    try:
        await asyncio.wait_for(pump, _LOG_DRAIN_S)
    except TimeoutError:
        log.warning("job.logs.drain_timeout", extra=fields(job=job_id))
