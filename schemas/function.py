"""A registered function version and its limits."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.clock import utcnow
from schemas.names import NAME_PATTERN

HANDLER_PATTERN = r"^[A-Za-z0-9_./-]+(:[A-Za-z_][A-Za-z0-9_]*)?$"


KiB = 1024
# The most names a function's ``calls`` allow-list holds, and the most steps of a sequence.
MAX_CALLS = 64
MAX_STEPS = 32


class Limits(BaseModel):
    """Per-function limits with their defaults, validated at registration against these bounds.

    Results and params travel in NATS messages, whose default maximum is 1 MiB: their
    limits stay below it.
    """

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=30.0, gt=0, le=900, strict=True)
    memory_mb: int = Field(default=256, ge=16, le=8192, strict=True)
    # CPU share in cores (Docker NanoCpus).
    cpus: float = Field(default=1.0, ge=0.05, le=64, strict=True)
    # Processes and threads in the container (a fork bomb stops here).
    pids: int = Field(default=128, ge=8, le=4096, strict=True)
    result_bytes: int = Field(default=256 * KiB, ge=KiB, le=768 * KiB, strict=True)
    # Output kept as logs; what is past it is cut, with a visible marker.
    log_bytes: int = Field(default=1024 * KiB, ge=KiB, le=16 * 1024 * KiB, strict=True)
    params_bytes: int = Field(default=256 * KiB, ge=KiB, le=768 * KiB, strict=True)
    # Network access for the call. Dependency installation gets network regardless.
    network: bool = False


class FunctionRecord(BaseModel):
    """One version of a function, as kept in the functions KV bucket (key = name)."""

    name: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    size: int = Field(ge=0)
    archive: Literal["zip", "tar.gz"]
    # True when requirements.txt / package.json declares anything to install.
    has_dependencies: bool = False
    limits: Limits = Field(default_factory=Limits)
    # Handler protocol: "module:function" (Python) or "module" / "module:export" (Node.js),
    # served by the runtime's handler_command; None = the runtime's run command per call.
    handler: str | None = Field(default=None, max_length=200, pattern=HANDLER_PATTERN)
    # The functions this one may call from its handler (``faas.call``); none by default.
    calls: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list, max_length=MAX_CALLS)
    # A sequence: the platform calls these functions in turn (each one's result is the next
    # one's params) without a container of its own; ``runtime`` is the first step's and
    # ``digest`` the digest of the steps (there is no archive).
    sequence: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_STEPS
    )
    created_at: datetime = Field(default_factory=utcnow)
