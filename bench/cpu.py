"""CPU time spent by each process of the platform over a measurement window (Linux /proc).

Dividing by the calls made in the window gives CPU milliseconds per call and per component:
where a warm call's time goes when the machine is the limit.
"""

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
# Docker's own processes: the engine, containerd, the per-container shims.
DOCKER_COMMS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process (its threads included), or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after the last ")"
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def pids_by_comm(names: tuple[str, ...]) -> list[int]:
    """Processes whose command name (``/proc/<pid>/comm``, 15 chars) is one of ``names``."""
    wanted = {n[:15] for n in names}
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in wanted:
            out.append(int(entry.name))
    return out


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle since boot (``/proc/stat``)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user/nice
    return (sum(values[:8]) - idle) * TICK_S


def _label(pid: int) -> str:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    return f"{comm}: {cmd[:80]}" if cmd else comm


def all_processes() -> dict[int, float]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (cpu := cpu_seconds(int(entry.name))) is not None:
            out[int(entry.name)] = cpu
    return out


class CpuMeter:
    """``m = CpuMeter({"gateway": [pid], ...}); m.start(); ...; m.stop() -> {name: cpu_s}``

    ``groups`` maps a component to its pids; ``docker=True`` adds Docker's processes as
    found at ``start``. ``stop`` also gives ``other processes`` (every other process: the
    functions' own processes in their containers, and whatever else runs on the machine, see
    :attr:`other_top`) and ``unattributed`` (busy CPU time of the machine in no process:
    interrupts, processes that ended meanwhile)."""

    def __init__(self, groups: Mapping[str, list[int]], docker: bool = True) -> None:
        self.groups = {k: list(v) for k, v in groups.items()}
        self._docker = docker
        self._t0: dict[int, float] = {}
        self._machine0 = 0.0
        self.other_top: dict[str, float] = {}

    def start(self) -> None:
        if self._docker:
            self.groups["docker"] = pids_by_comm(DOCKER_COMMS)
        self._t0 = all_processes()
        self._machine0 = machine_busy_seconds()

    def stop(self, top: int = 5) -> dict[str, float]:
        now = all_processes()
        machine = machine_busy_seconds() - self._machine0
        delta = {pid: max(0.0, cpu - self._t0.get(pid, 0.0)) for pid, cpu in now.items()}
        out = {name: sum(delta.get(p, 0.0) for p in pids) for name, pids in self.groups.items()}
        mine = {p for pids in self.groups.values() for p in pids}
        others = {pid: d for pid, d in delta.items() if pid not in mine and d > 0}
        out["other processes"] = sum(others.values())
        out["unattributed"] = max(0.0, machine - sum(out.values()))
        by_label: dict[str, float] = {}
        for pid, d in others.items():
            label = _label(pid)
            by_label[label] = by_label.get(label, 0.0) + d
        self.other_top = {k: round(v, 3) for k, v in sorted(by_label.items(), key=lambda kv: -kv[1])[:top]}
        return out


async def wait_quiet(timeout: float, busy_cores: float = 0.3, window_s: float = 1.0) -> float:
    """Wait (at most ``timeout`` s) until the machine's busy CPU over a ``window_s`` window is
    below ``busy_cores`` cores: other work on a shared machine skews a benchmark. Returns the
    busy cores of the last window."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        t0, b0 = loop.time(), machine_busy_seconds()
        await asyncio.sleep(window_s)
        busy = (machine_busy_seconds() - b0) / (loop.time() - t0)
        if busy < busy_cores or loop.time() >= deadline:
            return busy
