"""A node agent's heartbeat, kept in the nodes KV bucket (key = node id, TTL'd)."""

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.clock import utcnow
from schemas.jobs import JobMaxima
from schemas.names import NAME_PATTERN


def function_key(name: str, version: int) -> str:
    return f"{name}@{version}"


class NodeState(BaseModel):
    node_id: str = Field(pattern=NAME_PATTERN)
    # A random id per agent process: tells two live agents claiming one node id apart.
    instance: str | None = None
    policy: str
    slots: int
    free: int
    runtimes: list[str] = Field(default_factory=list)
    # Idle warm containers: runtime name -> count, and "function@version" -> count.
    warm_runtimes: dict[str, int] = Field(default_factory=dict)
    warm_functions: dict[str, int] = Field(default_factory=dict)
    # None: an agent that does not say (the job is sent all the same; the node decides).
    job_max: JobMaxima | None = None
    at: datetime = Field(default_factory=utcnow)
