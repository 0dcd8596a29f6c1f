"""Sampling the platform's Python processes with py-spy while a load runs, and summarising
where their CPU time goes: self time by library (the file of the innermost frame)."""

import asyncio
import re
import shutil
from collections import Counter
from pathlib import Path

# the event loop waiting for I/O: py-spy shows the leaf as ``EpollSelector.select (selectors.py:468)``
IDLE_LEAVES = ("(selectors.py:",)
_FILE = re.compile(r"\((?P<path>[^()]*?):\d+\)$")


def library_of(frame: str) -> str:
    """``asyncio/selector_events.py``, ``nats/aio/client.py``, ``faas:gateway/invoker.py``..."""
    m = _FILE.search(frame)
    path = m.group("path") if m else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if m and re.search(r"/lib/python3\.\d+/", path):
        return re.split(r"/lib/python3\.\d+/", path, maxsplit=1)[1]
    for top in ("gateway/", "node_agent/", "store/", "common/", "schemas/"):
        if path.startswith(top):
            return "faas:" + path
        if f"/{top}" in path:
            return "faas:" + top + path.split(f"/{top}", 1)[1]
    return path or "?"


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` (collapsed stacks: ``frame;frame;... count``)."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def self_time(stacks: list[tuple[list[str], int]], top: int = 12) -> dict[str, object]:
    """Busy samples (the event loop waiting in select is idle) and the share of them per
    library of the innermost frame."""
    busy = Counter[str]()
    idle = 0
    for frames, n in stacks:
        if any(leaf in frames[-1] for leaf in IDLE_LEAVES):
            idle += n
            continue
        busy[library_of(frames[-1])] += n
    total = sum(busy.values())
    return {
        "busy_samples": total,
        "idle_samples": idle,
        "self_share": {k: round(v / total, 3) for k, v in busy.most_common(top)} if total else {},
    }


def _outputs(out_dir: Path, names: list[str]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: out_dir / f"{name}.collapsed.txt" for name in names}


def summarise(files: dict[str, Path]) -> dict[str, dict[str, object]]:
    """:func:`self_time` of each recorded file."""
    return {name: {"file": str(path), **self_time(parse_collapsed(path.read_text()))} for name, path in files.items()}


async def record(pids: dict[str, int], seconds: float, out_dir: Path, rate: int = 200) -> dict[str, Path]:
    """Start py-spy on each pid for ``seconds``; returns the raw files once all are done.
    Needs py-spy on PATH and ptrace rights (root, or CAP_SYS_PTRACE)."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    files = _outputs(out_dir, list(pids))
    procs = [
        await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(files[name]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    await asyncio.gather(*(p.wait() for p in procs))
    return {name: path for name, path in files.items() if path.exists()}
