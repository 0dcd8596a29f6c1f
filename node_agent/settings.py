import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import is_valid_name


def _default_node_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return (host or "node")[:48]


class AgentSettings(BaseSettings):
    """Configuration of one node agent (env prefix ``FAAS_AGENT_``)."""

    model_config = SettingsConfigDict(env_prefix="FAAS_AGENT_")

    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = "faas"
    node_id: str = Field(default_factory=_default_node_id)
    # Runtimes served; empty = every registered runtime, following the runtimes bucket.
    runtimes: list[str] = Field(default_factory=list)
    # Calls run at once on this node: the agent never pulls more work than this.
    slots: int = Field(default=8, ge=1, le=1024)
    policy: Literal["none", "warm-runtime", "warm-function", "adaptive"] = "none"
    # Warm pools (see node_agent/pools/pool.py): idle containers kept per runtime (warm-runtime)
    # at least, per key at most, on this node at most; idle expiry; demand time constant.
    pool_min: int = Field(default=1, ge=0, le=64)
    pool_max: int = Field(default=8, ge=1, le=256)
    max_warm: int = Field(default=16, ge=0, le=1024)
    pool_idle_s: float = Field(default=300.0, gt=0)
    demand_window_s: float = Field(default=30.0, gt=0)
    # Containers the pools make at once: a start takes a core for a while, and more at once
    # only slow each other and the calls running beside them. 0 = the number of cores.
    pool_max_fills: int = Field(default=0, ge=0, le=256)
    # adaptive: idle stem cells kept per runtime served at least; the calls in the last
    # demand window after which a function gets a pool of its own; what a function
    # container saves relative to a stem cell, for eviction when the node is full.
    stem_min: int = Field(default=2, ge=0, le=64)
    repeat_calls: float = Field(default=1.5, ge=0)
    function_layer_saving: float = Field(default=0.1, gt=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    # Docker endpoint; None = DOCKER_HOST or the local socket.
    docker_url: str | None = None
    # A CA bundle handed to containers (mounted read-only, PIP_CERT/SSL_CERT_FILE/...).
    ca_bundle: Path | None = None
    # The platform's secrets key (common/sealing.py), the gateway's copy: opens the jobs'
    # sealed secret_env and registry_auth. Without one, a job that has secrets ends ERROR.
    secrets_key_file: Path | None = None
    # Redelivery: a call not acked within ack_wait is redelivered (kept alive by in_progress
    # while it runs); after max_attempts deliveries it ends as an error.
    ack_wait_s: float = Field(default=30.0, ge=1)
    max_attempts: int = Field(default=3, ge=1, le=100)
    fetch_timeout_s: float = Field(default=2.0, gt=0)
    # A call still running after this gets its ``started`` event (its record shows RUNNING);
    # a shorter one is recorded from its ``finished`` event alone. 0: every call at once.
    started_after_s: float = Field(default=0.05, ge=0)
    # Graceful stop: running calls get this long to finish, then are cancelled.
    grace_s: float = Field(default=30.0, ge=0)
    cache_dir: Path = Path("data/agent-cache")
    # Warm handler containers get the protocol over a Unix socket in a directory of their own
    # under socket_dir (default: a new temporary directory), bind-mounted into the container;
    # off, or with a Docker engine on another host (docker_url tcp://...), attached stdio.
    handler_sockets: bool = True
    socket_dir: Path | None = None
    log_level: str = "INFO"

    @field_validator("node_id")
    @classmethod
    def _safe_node_id(cls, v: str) -> str:
        if not is_valid_name(v):
            raise ValueError("node_id may only hold letters, digits, '-' and '_'")
        return v
