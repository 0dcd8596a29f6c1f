"""Floors measured in the same run as the figures they are compared with."""

import argparse
import asyncio
import json
import time
from typing import Any

import aiodocker

from bench.stats import pct, summary

__all__ = ["container_floor", "json_line_floor", "one_shot_floor", "pct", "summary"]


async def container_floor(image: str, n: int, network_disabled: bool = False) -> list[float]:
    """create + start + wait + remove of ``python3 -c pass``, no network, through aiodocker.

    ``NetworkMode: none`` still gives the container a network namespace (with a loopback);
    ``network_disabled`` also sets ``NetworkDisabled``, as the agent does, which skips it and
    saves a large part of the start."""
    config: dict[str, Any] = {"Image": image, "Cmd": ["python3", "-c", "pass"], "HostConfig": {"NetworkMode": "none"}}
    if network_disabled:
        config["NetworkDisabled"] = True
    out = []
    async with aiodocker.Docker() as docker:
        for _ in range(n):
            t = time.perf_counter()
            c = await docker.containers.create(config)
            await c.start()
            await c.wait()
            await c.delete(force=True)
            out.append((time.perf_counter() - t) * 1000)
    return out


async def _with_stdin(docker: aiodocker.Docker, image: str, cmd: list[str], once: bool = False) -> Any:
    """A created container (no network) whose stdin and stdout will be attached."""
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": cmd,
        "OpenStdin": True,
        "StdinOnce": once,
        "AttachStdin": True,
        "AttachStdout": True,
        "HostConfig": {"NetworkMode": "none"},
    }
    return await docker.containers.create(config)


async def json_line_floor(image: str, n: int) -> list[float]:
    """One JSON line round trip to a process already running in a container (attached stdio)."""
    echo = "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n"
    async with aiodocker.Docker() as docker:
        c = await _with_stdin(docker, image, ["python3", "-u", "-c", echo])
        try:
            stream = c.attach(stdin=True, stdout=True, stderr=True)
            async with stream:
                await c.start()
                out = []
                for i in range(n):
                    t = time.perf_counter()
                    await stream.write_in(json.dumps({"i": i}).encode() + b"\n")
                    buf = b""
                    while not buf.endswith(b"\n"):
                        msg = await stream.read_out()
                        assert msg is not None
                        buf += msg.data
                    out.append((time.perf_counter() - t) * 1000)
                return out
        finally:
            await c.delete(force=True)


async def one_shot_floor(image: str, n: int) -> dict[str, list[float]]:
    """What a warm-runtime call costs at least: a container is created and started ahead (not
    timed) with a shell waiting on stdin; a line arrives, the shell execs ``python3 -c
    'print(1)'``. Timed from the write to: the first output (``output``), the end of the
    attached stream as the process exits (``eof``), Docker's ``wait`` answering (``wait``)."""
    cmd = ["sh", "-c", "head -n 1 >/dev/null && exec python3 -c 'print(1)'"]
    out: dict[str, list[float]] = {"output": [], "eof": [], "wait": []}
    async with aiodocker.Docker() as docker:
        for _ in range(n):
            c = await _with_stdin(docker, image, cmd, once=True)
            try:
                stream = c.attach(stdin=True, stdout=True, stderr=True)
                async with stream:
                    await c.start()
                    t = time.perf_counter()
                    await stream.write_in(b"go\n")
                    first = None
                    while await stream.read_out() is not None:
                        first = first or time.perf_counter()
                    eof = time.perf_counter()
                    await c.wait()
                    done = time.perf_counter()
                out["output"].append(((first or eof) - t) * 1000)
                out["eof"].append((eof - t) * 1000)
                out["wait"].append((done - t) * 1000)
            finally:
                await c.delete(force=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Container, one-shot and JSON-line floors on the faas-python image (needs Docker)."
    )
    parser.add_argument("--image", default="faas-python")
    parser.add_argument("-n", type=int, default=10, help="containers per container floor (default 10)")
    parser.add_argument("--lines", type=int, default=200, help="JSON lines for the line floor (default 200)")
    args = parser.parse_args()

    async def run() -> None:
        print("container floor", summary(await container_floor(args.image, args.n)))
        print("container floor, network disabled", summary(await container_floor(args.image, args.n, True)))
        print("json-line floor", summary(await json_line_floor(args.image, args.lines)))
        for what, values in (await one_shot_floor(args.image, args.n)).items():
            print(f"one-shot floor ({what})", summary(values))

    asyncio.run(run())


if __name__ == "__main__":
    main()
