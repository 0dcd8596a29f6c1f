"""What machine a run was made on."""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiodocker

from common.natsserver import find_binary


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


async def _nats_version() -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            find_binary(), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return out.decode().strip().removeprefix("nats-server: ")
    except Exception:
        return None


async def _docker_version() -> str | None:
    try:
        async with aiodocker.Docker() as docker:
            return str((await docker.version()).get("Version"))
    except Exception:
        return None


async def describe() -> dict[str, Any]:
    u = os.uname()
    return {
        "host": u.nodename,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "kernel": u.release,
        "python": sys.version.split()[0],
        "docker": await _docker_version(),
        "nats_server": await _nats_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def one_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpus']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Docker {m['docker']}, nats-server {m['nats_server']}, Python {m['python']}, "
        f"load average at start {m['loadavg_at_start']}"
    )
