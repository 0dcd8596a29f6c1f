"""A registered function version and its limits."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.names import NAME_PATTERN


def _now() -> datetime:
    return datetime.now(UTC)


class Limits(BaseModel):
    """Per-function limits, validated at registration against these bounds."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=30.0, gt=0, le=900)
    memory_mb: int = Field(default=256, ge=16, le=8192)
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
    created_at: datetime = Field(default_factory=_now)
