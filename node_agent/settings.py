import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from common.natsclient import NatsClientSettings
from node_agent.containers.artifacts import DEFAULT_BODY_BYTES
from node_agent.containers.firewall import Allowed, SealConfig
from node_agent.nested.calls import NestedConfig
from schemas import is_valid_name
from schemas.invocation import MAX_DEPTH


def _default_node_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return (host or "node")[:48]


class AgentSettings(NatsClientSettings):
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
    # adaptive: a newly deployed version keeps a stem cell ready this long for its first call
    expect_first_call_s: float = Field(default=60.0, ge=0)
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
    # A call that finishes while NATS is away keeps its result and tries to store its
    # finished event for up to this long (then it is left to be redelivered and run again).
    nats_patience_s: float = Field(default=300.0, ge=0)
    # A call still running after this gets its ``started`` event (its record shows RUNNING);
    # a shorter one is recorded from its ``finished`` event alone. 0: every call at once.
    started_after_s: float = Field(default=0.05, ge=0)
    # Graceful stop: running calls get this long to finish, then are cancelled.
    grace_s: float = Field(default=30.0, ge=0)
    # The user calls run as, "uid:gid", never root: the code copied into a container is
    # theirs. (Dependency installs run as root in their build container; a job runs as its
    # image's user unless it names one.)
    call_user: str = Field(default="10001:10001", pattern=r"^[0-9]+:[0-9]+$")
    # Container jobs: the resources of a job that asks for none, and the most a job may ask
    # for on this node (more: it ends ERROR saying so). A job without timeout_s ends TIMEOUT
    # after job_max_timeout_s. job_max_cpus 0: the number of cores.
    job_memory_mb: int = Field(default=2048, ge=16)
    job_cpus: float = Field(default=1.0, ge=0.05)
    job_pids: int = Field(default=4096, ge=8)
    job_max_memory_mb: int = Field(default=8192, ge=16)
    job_max_cpus: float = Field(default=0.0, ge=0)
    job_max_timeout_s: float = Field(default=3600.0, gt=0)
    cache_dir: Path = Path("data/agent-cache")
    # Dependency images no function's latest version needs and job images this agent
    # pulled are removed every image_prune_s once unused for image_idle_s (containers/prune.py).
    image_prune_s: float = Field(default=3600.0, gt=0)
    image_idle_s: float = Field(default=86400.0, ge=0)
    # Code tar bodies kept in memory (least recently used out first), in bytes.
    artifact_cache_bytes: int = Field(default=DEFAULT_BODY_BYTES, ge=0)
    # Warm handler containers get the protocol over a Unix socket in a directory of their own
    # under socket_dir (default: a new temporary directory), bind-mounted into the container;
    # off, or with a Docker engine on another host (docker_url tcp://...), attached stdio.
    handler_sockets: bool = True
    socket_dir: Path | None = None
    # Containers with network access (functions whose limits say network, jobs, dependency
    # installs) join a Docker network sealed by host firewall rules (containers/firewall.py):
    # no route to this host, private or link-local ranges, or the platform's addresses. If
    # the rules cannot be applied, such containers are refused. false: Docker's default
    # bridge, unsealed; only where the host's own firewall does the same.
    network_seal: bool = True
    network_name: str = Field(default="faas-fn", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    network_bridge: str = Field(default="faasfn0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    # Destinations containers may reach despite the seal, e.g. a proxy: "10.0.0.5/32:3128".
    network_allow: list[str] = Field(default_factory=list)
    # Refused besides (networks, addresses, host names): the platform's public addresses.
    # The NATS servers of nats_url are always refused.
    network_deny: list[str] = Field(default_factory=list)
    # How often the rules are checked, and put back if something removed them.
    network_check_s: float = Field(default=30.0, gt=0)
    # GET /metrics (Prometheus) and GET /healthz, without a token: loopback unless a scraper
    # elsewhere needs it (common/metrics_http.py). Port 0: a free one (tests).
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9181, ge=0, le=65535)
    # Nested calls (node_agent/nested): a handler's faas.call and sequences. A call deeper
    # than max_depth, or past max_tree_calls nested calls of one tree made from this node,
    # is refused; at most max_parked calls wait for their nested calls at once (each keeps
    # its container, outside the slots); past it a call's nested call is refused. A child
    # not answered on the reply subject is looked up in the events stream every
    # nested_poll_s. off: faas.call is refused and sequences end ERROR.
    nested_calls: bool = True
    max_depth: int = Field(default=32, ge=1, le=MAX_DEPTH)
    max_tree_calls: int = Field(default=1000, ge=1)
    max_parked: int = Field(default=64, ge=0)
    nested_poll_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"

    def serves(self, runtime: str) -> bool:
        """Whether this node serves ``runtime`` (every registered one when none are listed)."""
        return not self.runtimes or runtime in self.runtimes

    @field_validator("node_id")
    @classmethod
    def _safe_node_id(cls, v: str) -> str:
        if not is_valid_name(v):
            raise ValueError("node_id may only hold letters, digits, '-' and '_'")
        return v

    @field_validator("network_allow")
    @classmethod
    def _allowed(cls, v: list[str]) -> list[str]:
        for entry in v:
            Allowed.parse(entry)  # raises ValueError saying what is wrong
        return v

    def seal(self) -> SealConfig:
        """The sealed network's settings; the NATS servers' hosts are denied too."""
        nats_hosts = [urlsplit(u.strip()).hostname or "" for u in self.nats_url.split(",")]
        return SealConfig(
            network=self.network_name,
            bridge=self.network_bridge,
            allow=tuple(Allowed.parse(e) for e in self.network_allow),
            deny=tuple(dict.fromkeys([*self.network_deny, *(h for h in nats_hosts if h)])),
        )

    @field_validator("call_user")
    @classmethod
    def _not_root(cls, v: str) -> str:
        if int(v.partition(":")[0]) == 0:
            raise ValueError("call_user may not be root (uid 0)")
        return v

    @property
    def call_owner(self) -> tuple[int, int]:
        uid, _, gid = self.call_user.partition(":")
        return int(uid), int(gid)

    @model_validator(mode="after")
    def _job_defaults_within_maxima(self) -> "AgentSettings":
        if self.job_memory_mb > self.job_max_memory_mb:
            raise ValueError("job_memory_mb is over job_max_memory_mb")
        if self.job_cpus > self.job_max_cpus_or_cores:
            raise ValueError("job_cpus is over job_max_cpus")
        return self

    def nested(self) -> NestedConfig:
        return NestedConfig(
            max_depth=self.max_depth,
            max_tree_calls=self.max_tree_calls,
            max_parked=self.max_parked,
            poll_s=self.nested_poll_s,
        )

    @property
    def job_max_cpus_or_cores(self) -> float:
        return self.job_max_cpus or float(os.cpu_count() or 1)
