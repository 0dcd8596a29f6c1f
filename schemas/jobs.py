"""Container jobs: an image, a command and a priority, run once, with live logs and cancel.

A job is published on ``<prefix>.invoke.job.<priority>`` (priority 0..9, higher first);
its events share the events stream with calls (``<prefix>.events.<job_id>.<kind>``) with
job-specific kinds; a cancel request is a key in the cancels KV bucket.

A job's secrets (``secret_env`` values, ``registry_auth``) never travel in clear: the gateway
seals them (:class:`JobSecrets`, encrypted with the platform's secrets key) into
``JobMessage.sealed``, and the node agent opens them just before it pulls the image and
creates the container. Events and records carry the secret variables' names only.
"""

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, model_validator

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


# A secret variable's name: what a shell accepts (and Docker passes on unchanged).
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_SECRET_ENV = 100

EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]


class RegistryAuth(BaseModel):
    """Credentials for pulling the job's image. Sealed for the agents; never in records or events."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=1024)
    # SecretStr: a dump or a repr shows "**********", never the password.
    password: SecretStr = Field(max_length=16 * 1024)
    serveraddress: str | None = Field(default=None, max_length=1024)

    def docker_auth(self) -> dict[str, str]:
        """What the Docker API takes (``X-Registry-Auth``)."""
        auth = {"username": self.username, "password": self.password.get_secret_value()}
        if self.serveraddress:
            auth["serveraddress"] = self.serveraddress
        return auth


class JobContainer(BaseModel):
    """``env`` is shown in records and answers; ``secret_env`` (names only) and
    ``registry_auth`` never are."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1, max_length=255)
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[EnvName, SecretStr] = Field(default_factory=dict, max_length=MAX_SECRET_ENV)
    registry_auth: RegistryAuth | None = None
    # Resources of the container, within the maxima of the node that runs it; unset: the
    # node's defaults (FAAS_AGENT_JOB_MEMORY_MB, FAAS_AGENT_JOB_CPUS).
    memory_mb: int | None = Field(default=None, ge=16, le=256 * 1024, strict=True)
    cpus: float | None = Field(default=None, ge=0.05, le=256, strict=True)
    # The user the command runs as (Docker's ``User``: name or uid, optionally ``:group``);
    # unset: the image's own user.
    user: str | None = Field(default=None, pattern=USER_PATTERN)

    @model_validator(mode="after")
    def _secret_names_are_not_in_env(self) -> "JobContainer":
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"secret_env names also set in env: {', '.join(both)}")
        if any("\0" in v.get_secret_value() for v in self.secret_env.values()):
            raise ValueError("secret_env values cannot hold a NUL character")
        return self

    @property
    def has_secrets(self) -> bool:
        return bool(self.secret_env) or self.registry_auth is not None

    def without_secrets(self) -> "JobContainer":
        return self.model_copy(update={"secret_env": {}, "registry_auth": None})

    def secrets(self, job_id: str) -> "JobSecrets":
        """The secrets in clear, bound to this job, for sealing."""
        return JobSecrets(
            job_id=job_id,
            binding=secrets_binding(job_id, self),
            env={k: v.get_secret_value() for k, v in self.secret_env.items()},
            registry_auth=self.registry_auth.docker_auth() if self.registry_auth else None,
        )


class JobSpec(BaseModel):
    """What ``POST /v1/jobs`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=4096)
    priority: int = Field(default=5, ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True)
    container: JobContainer
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Unset: the node's maximum (FAAS_AGENT_JOB_MAX_TIMEOUT_S). Past it the job ends TIMEOUT.
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_JOB_TIMEOUT_S, strict=True)


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
    """The message on ``<prefix>.invoke.job.<priority>``.

    ``sealed``: the job's :class:`JobSecrets`, encrypted with the platform's secrets key
    (``common.sealing``); the spec itself holds no secret (a message that does is invalid)."""

    id: str = Field(pattern=CALL_ID_PATTERN)
    spec: JobSpec
    created_at: datetime = Field(default_factory=utcnow)
    sealed: str | None = Field(default=None, max_length=1 << 20)

    @model_validator(mode="after")
    def _no_secret_in_clear(self) -> "JobMessage":
        if self.spec.container.has_secrets:
            raise ValueError("secret_env and registry_auth travel sealed (by the gateway), never in clear")
        return self


class JobSecrets(BaseModel):
    """What ``JobMessage.sealed`` holds once opened: only ever encoded to be encrypted.

    ``binding`` ties the secrets to the job's id, image, command and env
    (:func:`secrets_binding`): a sealed blob copied into another job does not open for it."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    binding: str
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    registry_auth: dict[str, str] | None = Field(default=None, repr=False)

    def values(self) -> list[str]:
        """Every secret value (to mask wherever output or an error could show it)."""
        found = list(self.env.values())
        if self.registry_auth and self.registry_auth.get("password"):
            found.append(self.registry_auth["password"])
        return found


def secrets_binding(job_id: str, container: JobContainer) -> str:
    """A digest of what decides where a job's secrets go: its id, image, command and env."""
    what = {"id": job_id, "image": container.image, "command": container.command, "env": container.env}
    return hashlib.sha256(json.dumps(what, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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
    # The names of the job's secret variables: their values are never shown.
    secret_env_names: list[str] = Field(default_factory=list)
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
    spec: JobSpec  # without its secrets (the publisher removes them)
    secret_env_names: list[str] = Field(default_factory=list)


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
