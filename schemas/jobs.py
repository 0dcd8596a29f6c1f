"""Container jobs: an image, a command and a priority, run once, with live logs and cancel.

A job is published on ``<prefix>.invoke.job.<priority>`` (priority 0..9, higher first);
its events share the events stream with calls (``<prefix>.events.<job_id>.<kind>``) with
job-specific kinds; a cancel request is a key in the cancels KV bucket.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.clock import utcnow
from schemas.codec import decode_as
from schemas.names import CALL_ID_PATTERN, NAME_PATTERN
from schemas.status import Progress

MIN_PRIORITY, MAX_PRIORITY = 0, 9
# A user name or uid, optionally with a group name or gid, as Docker's ``User``.
USER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
# Bounds of what a job may ask for; each node has its own, lower, maxima (FAAS_AGENT_JOB_MAX_*).
MAX_JOB_TIMEOUT_S = 7 * 24 * 3600


class JobStatus(Progress):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    ERROR = "ERROR"
    # Still running at its timeout_s (or, without one, at the node's maximum): stopped.
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"


class RegistryAuth(BaseModel):
    """Credentials for pulling the job's image. Never stored in records or events."""

    model_config = ConfigDict(extra="forbid")

    username: str
    password: str
    serveraddress: str | None = None


class JobContainer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=255)
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    registry_auth: RegistryAuth | None = None
    # Resources of the container, within the maxima of the node that runs it; unset: the
    # node's defaults (FAAS_AGENT_JOB_MEMORY_MB, FAAS_AGENT_JOB_CPUS).
    memory_mb: int | None = Field(default=None, ge=16, le=256 * 1024)
    cpus: float | None = Field(default=None, ge=0.05, le=256)
    # The user the command runs as (Docker's ``User``: name or uid, optionally ``:group``);
    # unset: the image's own user.
    user: str | None = Field(default=None, pattern=USER_PATTERN)


class JobSpec(BaseModel):
    """What ``POST /v1/jobs`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=4096)
    priority: int = Field(default=5, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    container: JobContainer
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Unset: the node's maximum (FAAS_AGENT_JOB_MAX_TIMEOUT_S). Past it the job ends TIMEOUT.
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_JOB_TIMEOUT_S)


class JobMaxima(BaseModel):
    """The most a job may ask for on a node (its agent's ``FAAS_AGENT_JOB_MAX_*``), as its
    heartbeat says."""

    memory_mb: int
    cpus: float
    timeout_s: float


def over_maxima(spec: JobSpec, maxima: JobMaxima) -> list[tuple[str, float, float]]:
    """What ``spec`` asks for beyond ``maxima``: (field, asked, most) each."""
    c = spec.container
    asked = (
        ("memory_mb", c.memory_mb, maxima.memory_mb),
        ("cpus", c.cpus, maxima.cpus),
        ("timeout_s", spec.timeout_s, maxima.timeout_s),
    )
    return [(name, value, most) for name, value, most in asked if value is not None and value > most]


class JobMessage(BaseModel):
    """The message on ``<prefix>.invoke.job.<priority>``."""

    id: str = Field(pattern=CALL_ID_PATTERN)
    spec: JobSpec
    created_at: datetime = Field(default_factory=utcnow)


class JobResult(BaseModel):
    executed_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    exit_code: int | None = None
    error: str | None = None
    gpus: list[str] = Field(default_factory=list)


class JobRecord(BaseModel):
    id: str
    number: int | None = None
    name: str
    description: str = ""
    priority: int
    image: str
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus
    node: str | None = None
    container: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    result: JobResult = Field(default_factory=JobResult)


class _JobEvent(BaseModel):
    job_id: str = Field(pattern=CALL_ID_PATTERN)
    at: datetime = Field(default_factory=utcnow)


class JobAccepted(_JobEvent):
    kind: Literal["job_accepted"] = "job_accepted"
    number: int
    spec: JobSpec  # with registry_auth removed by the publisher


class JobStarted(_JobEvent):
    kind: Literal["job_started"] = "job_started"
    node: str
    container: str | None = None


class JobFinished(_JobEvent):
    kind: Literal["job_finished"] = "job_finished"
    status: JobStatus
    node: str | None = None
    result: JobResult


JobEvent = Annotated[JobAccepted | JobStarted | JobFinished, Field(discriminator="kind")]
_JOB_EVENT: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def decode_job_event(data: bytes | str) -> JobEvent:
    return decode_as(_JOB_EVENT, data)


class GetJob(BaseModel):
    id: str


class JobQuery(BaseModel):
    status: JobStatus | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = None


class JobPage(BaseModel):
    items: list[JobRecord]
    next_cursor: str | None = None
