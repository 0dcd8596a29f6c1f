"""What a container is made of (:class:`ContainerSpec`) and Docker's create body for it:
no capabilities, no new privileges, the limits, no network unless asked for."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ContainerSpec:
    image: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    memory_mb: int = 256
    network: bool = False
    pids_limit: int = 256
    cpus: float = 1.0
    binds: list[str] = field(default_factory=list)
    # Keep stdin open for an attached session (warm containers, handler protocol).
    stdin: bool = False
    # Attached sessions read output from the stream, so the engine need not keep it.
    keep_logs: bool = True
    # Docker's ``User`` (uid[:gid] or name); None: the image's own.
    user: str | None = None


# What a container is for (``faas_container_starts_total{kind}``), told by its maker's labels.
CONTAINER_KINDS = ("cold", "stem", "function", "deps", "job")


def container_kind(spec: ContainerSpec) -> str:
    """A call run cold (``faas.call``), a stem cell (``faas.pool`` ``rt_…``), a function's
    warm container (``faas.pool`` ``fn_…``), a dependency install (``faas.build``); a job's
    container is made by ``create_job``."""
    labels = spec.labels
    pool = labels.get("faas.pool", "")
    if pool.startswith("rt_"):
        return "stem"
    if pool.startswith("fn_"):
        return "function"
    if "faas.build" in labels:
        return "deps"
    if "faas.job" in labels:
        return "job"
    return "cold"


def container_config(spec: ContainerSpec, network: str = "none") -> dict[str, Any]:
    """Docker's create body for ``spec``; ``network``: the Docker network of a container
    with network access."""
    host: dict[str, Any] = {
        "NetworkMode": network if spec.network else "none",
        "Memory": spec.memory_mb * 1024 * 1024,
        "MemorySwap": spec.memory_mb * 1024 * 1024,  # no swap: the limit is the limit
        "PidsLimit": spec.pids_limit,
        "NanoCpus": int(spec.cpus * 1e9),
        "SecurityOpt": ["no-new-privileges"],
        "CapDrop": ["ALL"],
        "Binds": spec.binds,
        # Logs are read once after exit; cap what the engine keeps on disk.
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "64m", "max-file": "1"}}
        if spec.keep_logs
        else {"Type": "none", "Config": {}},
    }
    config: dict[str, Any] = {
        "Image": spec.image,
        "Cmd": spec.cmd,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": spec.labels,
        "NetworkDisabled": not spec.network,
        "AttachStdout": spec.stdin,
        "AttachStderr": spec.stdin,
        "AttachStdin": spec.stdin,
        "OpenStdin": spec.stdin,
        "StdinOnce": False,
        "HostConfig": host,
    }
    if spec.workdir:
        config["WorkingDir"] = spec.workdir
    if spec.user:
        config["User"] = spec.user
    return config
