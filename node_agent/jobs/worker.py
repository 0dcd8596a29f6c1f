"""Container jobs on a node: priority intake within the node's slots, one run per job, cancels.

Per job: decode -> give up after ``max_attempts`` deliveries -> cancelled while queued? (the
cancels bucket) -> run (``job_run``: image, container, live logs, wait) -> publish
``JobFinished`` -> ack -> remove the container. The ack comes only after the final event is
stored, so the job of an agent that dies is redelivered; while it runs, ``in_progress`` keeps
it from being redelivered early. A cancel request (a key in the cancels bucket, watched by
the node's :class:`~node_agent.cancels.CancelWatch`, which calls share) stops the job's
container: SIGTERM, ``cancel_grace_s``, SIGKILL.

The worker shares the node's slot semaphore with the call pull loops: a slot is taken only
when a job is known to be waiting, so an idle job intake never holds one.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from common.events import last_event
from common.jspub import NATS_AWAY
from common.lifecycle import TaskSet
from common.logs import fields
from common.sealing import SecretsKey
from common.workitem import Delivery
from node_agent.cancels import CancelWatch
from node_agent.jobs.intake import PriorityIntake
from node_agent.jobs.run import Interrupt, JobControl, JobEngine, JobRun, RunOutcome, RunSettings
from schemas import (
    InvalidMessage,
    JobFinished,
    JobMessage,
    JobResult,
    JobStarted,
    JobStatus,
    Layout,
    decode,
    dedup,
    encode,
)

log = logging.getLogger(__name__)

# After the grace period, interrupted jobs get cancel_grace_s plus this to stop their containers.
_STOP_MARGIN_S = 10.0
_ERROR_BACKOFF_S = 1.0


@dataclass(frozen=True)
class JobConfig(RunSettings):
    """The worker's settings (``python -m node_agent`` builds them from ``AgentSettings``): how
    each job runs (:class:`RunSettings`, which a JobConfig is) and how jobs are taken."""

    # Graceful stop: running jobs get this long to finish, then go back to the queue.
    grace_s: float = 30.0
    ack_wait_s: float = 30.0
    max_attempts: int = 3
    # Idle intake: one stream-info request per poll (and at once when a job is published).
    poll_s: float = 0.5
    # A job that ends while NATS is away keeps its outcome this long, trying to store its
    # final event (common/workitem.py), instead of being redelivered and run again.
    patience_s: float = 0.0

    def __post_init__(self) -> None:
        if min(self.grace_s, self.cancel_grace_s) < 0 or self.ack_wait_s < 1 or self.poll_s <= 0:
            raise ValueError(f"invalid job config {self}")
        if self.max_attempts < 1 or self.memory_mb < 16 or self.max_log_bytes < 0:
            raise ValueError(f"invalid job config {self}")
        if self.memory_mb > self.max_memory_mb or self.cpus > self.max_cpus or self.max_timeout_s <= 0:
            raise ValueError(f"invalid job config {self}")


class JobWorker:
    """``worker = JobWorker(config, slots, nc, layout, engine); await worker.start() ... stop()``.

    ``tasks``: the owner's TaskSet for the worker's side tasks (intake), so that one dying
    stops the owner loudly; by default the worker's own. ``secrets_key`` opens the jobs'
    sealed secrets (a job that has some fails without it). ``cancels``: the node's cancel
    watch, started by its owner; by default the worker watches the bucket itself.
    """

    def __init__(
        self,
        config: JobConfig,
        slots: asyncio.Semaphore,
        nc: Client,
        layout: Layout,
        engine: JobEngine,
        tasks: TaskSet | None = None,
        secrets_key: SecretsKey | None = None,
        cancels: CancelWatch | None = None,
    ) -> None:
        self.config = config
        self._slots = slots
        self._nc = nc
        self._js = nc.jetstream()
        self._layout = layout
        self._engine = engine
        self._secrets_key = secrets_key
        self.tasks = tasks or TaskSet(f"jobs:{config.node_id}")
        self._jobs = TaskSet(f"jobs:{config.node_id}:run")
        self._intake = PriorityIntake(nc, layout, config.ack_wait_s, config.max_attempts + 1, config.poll_s)
        self._running: dict[str, JobControl] = {}
        self._side: list[asyncio.Task[Any]] = []
        self._intake_task: asyncio.Task[Any] | None = None
        self._cancels = cancels
        self._own_cancels = cancels is None
        self._started = False
        self._stopping = False
        self._requeue_all = False

    @property
    def running(self) -> list[str]:
        """Ids of the jobs this worker is running now."""
        return list(self._running)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self, intake: bool = True) -> None:
        """Create the consumers, watch cancels and (unless ``intake=False``, for
        ``run_until_idle``) take jobs whenever a slot is free. Idempotent."""
        if self._started:
            return
        self._started = True
        await self._intake.setup()
        if self._cancels is None:
            self._cancels = CancelWatch(await self._js.key_value(self._layout.cancels_bucket), self.config.node_id)
            await self._cancels.start()
        if intake:
            self._intake_task = self.tasks.spawn(self._intake_loop(), "jobs:intake")
            self._side.append(self._intake_task)
        log.info("jobs.started", extra=fields(node=self.config.node_id, intake=intake))

    async def stop(self) -> None:
        """Stop taking jobs; running ones get ``grace_s`` to finish, then their containers are
        stopped and they go back to the queue (another node runs them again)."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        c = self.config
        # 1. No new jobs.
        if self._intake_task is not None:
            self._intake_task.cancel()
            await asyncio.gather(self._intake_task, return_exceptions=True)
        # 2. Running jobs may finish within the grace period.
        if not await self._jobs.wait_all(c.grace_s):
            # 3. The rest: SIGTERM, cancel_grace_s, SIGKILL, nak. Then whatever still hangs is cancelled.
            log.warning("jobs.requeueing", extra=fields(node=c.node_id, jobs=",".join(self._running)))
            self._requeue_all = True
            for control in self._running.values():
                control.interrupt(Interrupt.SHUTDOWN)
            if not await self._jobs.wait_all(c.cancel_grace_s + _STOP_MARGIN_S):
                log.error("jobs.stop.cancelling", extra=fields(node=c.node_id, tasks=len(self._jobs)))
                # A task cancelled while it tears a container down finishes that teardown; an
                # engine that hangs gets a second cancel (from wait_for) after the margin.
                try:
                    await asyncio.wait_for(self._jobs.cancel_all(), _STOP_MARGIN_S)
                except TimeoutError:
                    log.error("jobs.stop.abandoned", extra=fields(node=c.node_id, tasks=len(self._jobs)))
        # 4. Side tasks and subscriptions.
        for task in self._side:
            task.cancel()
        await asyncio.gather(*self._side, return_exceptions=True)
        await self._intake.close()
        if self._own_cancels and self._cancels is not None:
            await self._cancels.stop()
        log.info("jobs.stopped", extra=fields(node=c.node_id))

    async def __aenter__(self) -> "JobWorker":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_until_idle(self) -> int:
        """Burst mode (after ``start(intake=False)``): take jobs, highest priority first and
        within the slots, until none is ready and none is running. Returns how many were taken."""
        taken = 0
        while True:
            try:
                while await self._take_one(wait=False):
                    taken += 1
            except NATS_AWAY as err:
                # As the intake loop: NATS reconnecting (an outage is a pause), redo.
                log.warning("jobs.intake.retry", extra=fields(node=self.config.node_id, error=repr(err)))
                await asyncio.sleep(_ERROR_BACKOFF_S)
                continue
            if not len(self._jobs):
                return taken
            await self._jobs.wait_all()

    # --- intake ---------------------------------------------------------------------------
    async def _intake_loop(self) -> None:
        # stop() cancels this task; the flag ends it too if a library swallowed that cancel
        while not self._stopping:
            try:
                await self._take_one(wait=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Loop boundary: NATS reconnecting, the consumers deleted under us... pause, redo.
                log.exception("jobs.intake.error", extra=fields(node=self.config.node_id))
                await asyncio.sleep(_ERROR_BACKOFF_S)
                try:
                    await self._intake.setup()
                except Exception as err:
                    log.warning("jobs.intake.setup_failed", extra=fields(error=repr(err)))

    async def _take_one(self, wait: bool) -> bool:
        """Take the highest-priority ready job into a slot; False if none is ready (``wait=False``)."""
        while True:
            levels = await self._intake.waiting_levels()
            if levels:
                refresh = self._slots.locked()
                await self._slots.acquire()
                try:
                    if refresh:  # waited for the slot: a higher level may have filled meanwhile
                        levels = await self._intake.waiting_levels()
                    msg = await self._intake.take(levels)
                except BaseException:
                    self._slots.release()
                    raise
                if msg is not None:
                    d = Delivery(msg)
                    self._jobs.spawn(self._handle(d), f"job:{d.sequence}", critical=False)
                    return True
                self._slots.release()
            if not wait or self._stopping:
                return False
            await self._intake.wait_for_news()

    # --- one job -------------------------------------------------------------------------
    async def _handle(self, d: Delivery) -> None:
        try:
            await self._process(d)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked: redelivered after ack_wait (bounded by max_attempts).
            log.exception("job.handler_failed", extra=fields(subject=d.msg.subject, node=self.config.node_id))
        finally:
            self._slots.release()

    async def _process(self, d: Delivery) -> None:
        number = d.sequence
        try:
            job = decode(JobMessage, d.msg.data)
        except InvalidMessage as err:
            await self._finish(d, self._finished(f"j{number}", JobStatus.ERROR, f"invalid job: {err}"))
            return
        gave_up = d.exhausted(self.config.max_attempts)
        if gave_up is not None:
            await self._finish(d, self._finished(job.id, JobStatus.ERROR, gave_up))
            return
        # Registered before the cancels bucket is read: a cancel from now on reaches the run.
        control = JobControl()
        self._running[job.id] = control
        if self._requeue_all:
            control.interrupt(Interrupt.SHUTDOWN)
        assert self._cancels is not None
        try:
            with self._cancels.watching(job.id, lambda: control.interrupt(Interrupt.CANCELLED)):
                if await self._cancels.requested(job.id) or control.reason is Interrupt.CANCELLED:
                    await self._cancel_queued(d, job.id)
                    return
                outcome = await self._run(d, job, control)
        finally:
            if self._running.get(job.id) is control:
                del self._running[job.id]
        try:
            if outcome.requeue:
                log.info("job.requeued", extra=fields(job=job.id, number=number, node=self.config.node_id))
                await d.msg.nak()
            else:
                event = JobFinished(
                    job_id=job.id, status=outcome.status, node=self.config.node_id, result=outcome.result
                )
                await self._finish(d, event)
        finally:
            if outcome.container is not None and not outcome.removed:
                await self._engine.remove(outcome.container)

    async def _run(self, d: Delivery, job: JobMessage, control: JobControl) -> RunOutcome:
        number, attempt = d.sequence, d.attempt

        async def started(cid: str) -> None:
            event = JobStarted(job_id=job.id, node=self.config.node_id, container=cid)
            try:
                await self._js.publish(
                    self._layout.event(event.job_id, event.kind),
                    encode(event),
                    stream=self._layout.events_stream,
                    headers=dedup.header(dedup.job_started(job.id, attempt)),
                )
            except NATS_AWAY as err:
                # NATS is away: the job runs on, and its final event (patient) records it
                log.warning("job.started_unrecorded", extra=fields(job=job.id, error=repr(err)))
            log.info(
                "job.started",
                extra=fields(
                    job=job.id, number=number, attempt=attempt, priority=job.spec.priority, container=cid[:12]
                ),
            )

        run = JobRun(
            job, number, attempt, self._engine, self._js, self._layout, self.config, control, started, self._secrets_key
        )
        async with d.keepalive(self.config.ack_wait_s, job.id):
            return await run.run()

    async def _cancel_queued(self, d: Delivery, job_id: str) -> None:
        """Cancelled before it started: never runs. The gateway has usually published the
        final event already (it does when its record says QUEUED); if not, it is done here."""
        try:
            published = await last_event(self._js, self._layout, job_id, JobFinished) is not None
        except InvalidMessage:
            published = True  # there is one, unreadable: the job has ended all the same
        if not published:
            event = self._finished(job_id, JobStatus.CANCELLED, "cancelled before it started")
            await self._finish(d, event)
            return
        await d.msg.ack_sync()
        log.info("job.cancelled_queued", extra=fields(job=job_id, node=self.config.node_id))

    def _finished(self, job_id: str, status: JobStatus, error: str) -> JobFinished:
        result = JobResult(finished_at=datetime.now(UTC), error=error)
        return JobFinished(job_id=job_id, status=status, node=self.config.node_id, result=result)

    async def _finish(self, d: Delivery, event: JobFinished) -> None:
        await d.finish(
            self._js,
            self._layout.event(event.job_id, event.kind),
            encode(event),
            stream=self._layout.events_stream,
            headers=dedup.header(dedup.job_finished(event.job_id, d.attempt)),
            ack=Msg.ack_sync,  # waits for the server to confirm the ack
            patience_s=self.config.patience_s,
        )
        r = event.result
        log.info(
            "job.finished",
            extra=fields(job=event.job_id, status=event.status.value, exit_code=r.exit_code, ms=r.duration_ms),
        )
