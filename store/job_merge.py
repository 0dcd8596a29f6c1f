"""Folding job events into job state: pure, idempotent and tolerant of any order.

The same rules as calls (:mod:`schemas.fold`):

- a missing job is created by whichever event comes first; what was asked (name, image,
  command...) comes from ``job_accepted`` only; ``registry_auth`` and the values of
  ``secret_env`` are never kept (the event has neither: only the secret variables' names);
  ``created_at`` is the accepted event's time (an earlier event fills it provisionally);
- status only moves forward (``JobStatus.rank``); the first terminal ``job_finished`` wins
  and sets the result, every later one is ignored;
- the latest ``job_started`` (by its time) says which container runs the job; the node is
  the finishing event's when it names one, else the latest start's;
- ``updated_at`` is the time of the latest event applied (an ignored event does not count).
"""

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import JobAccepted, JobEvent, JobFinished, JobRecord, JobResult, JobStarted, JobStatus


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass
class JobState:
    """A job as the store keeps it: a :class:`schemas.JobRecord` plus what merging needs."""

    id: str
    created_at: datetime
    updated_at: datetime
    status: JobStatus = JobStatus.QUEUED
    number: int | None = None
    name: str | None = None
    description: str | None = None
    priority: int | None = None
    image: str | None = None
    command: list[str] | None = None
    env: dict[str, str] | None = None
    secret_env_names: list[str] | None = None
    metadata: dict[str, Any] | None = None
    started_node: str | None = None
    finished_node: str | None = None
    container: str | None = None
    started_at: datetime | None = None
    result: JobResult = field(default_factory=JobResult)

    def to_record(self) -> JobRecord:
        """The wire record. Before ``job_accepted`` is seen, what was asked is empty."""
        return JobRecord(
            id=self.id,
            number=self.number,
            name=self.name or "",
            description=self.description or "",
            priority=self.priority if self.priority is not None else 0,
            image=self.image or "",
            command=self.command or [],
            env=self.env or {},
            secret_env_names=self.secret_env_names or [],
            metadata=self.metadata or {},
            status=self.status,
            node=self.finished_node or self.started_node,
            container=self.container,
            created_at=self.created_at,
            updated_at=self.updated_at,
            result=self.result,
        )


def merge_job(state: JobState | None, event: JobEvent) -> JobState:
    """Apply one event to a job (created if None), in place; returns the state."""
    at = _utc(event.at)
    if state is None:
        state = JobState(id=event.job_id, created_at=at, updated_at=at)
    if isinstance(event, JobAccepted):
        applied = _apply_accepted(state, event, at)
    elif isinstance(event, JobStarted):
        applied = _apply_started(state, event, at)
    else:
        applied = _apply_finished(state, event)
    if applied and at > state.updated_at:
        state.updated_at = at
    return state


def merge_jobs(states: MutableMapping[str, JobState], events: Iterable[JobEvent]) -> set[str]:
    """Apply events in order to the jobs they name, creating missing ones; returns their ids."""
    touched: set[str] = set()
    for event in events:
        states[event.job_id] = merge_job(states.get(event.job_id), event)
        touched.add(event.job_id)
    return touched


def _apply_accepted(state: JobState, event: JobAccepted, at: datetime) -> bool:
    spec = event.spec
    state.number = event.number
    state.name = spec.name
    state.description = spec.description
    state.priority = spec.priority
    # Only the fields a record has: secrets (registry_auth, secret_env values) stay out even
    # if a publisher left them in.
    state.image = spec.container.image
    state.command = list(spec.container.command)
    state.env = dict(spec.container.env)
    state.secret_env_names = list(event.secret_env_names)
    state.metadata = dict(spec.metadata)
    state.created_at = at
    return True


def _apply_started(state: JobState, event: JobStarted, at: datetime) -> bool:
    if state.started_at is not None and at < state.started_at:
        # An older start: it only fills what is still unknown.
        applied = False
        if state.started_node is None:
            state.started_node, applied = event.node, True
        if state.container is None and event.container is not None:
            state.container, applied = event.container, True
    else:
        state.started_at = at
        state.started_node = event.node
        state.container = event.container
        applied = True
    if state.status.rank < JobStatus.RUNNING.rank:
        state.status = JobStatus.RUNNING
        applied = True
    return applied


def _apply_finished(state: JobState, event: JobFinished) -> bool:
    if state.status.terminal or event.status.rank < state.status.rank:
        return False
    if not event.status.terminal:
        # A "finished" that does not finish (RUNNING): at most a step forward, no result.
        moved = event.status.rank > state.status.rank
        state.status = event.status if moved else state.status
        return moved
    state.status = event.status
    state.result = _utc_result(event.result)
    if event.node is not None:
        state.finished_node = event.node
    return True


def _utc_result(result: JobResult) -> JobResult:
    times = {k: _utc(v) for k, v in (("executed_at", result.executed_at), ("finished_at", result.finished_at)) if v}
    return result.model_copy(update=times) if times else result
