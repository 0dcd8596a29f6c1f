"""A soak: ``faas up`` under a steady rate of calls for minutes, its memory sampled.

    python -m bench.soak --minutes 10 --rate 20            # the 10-minute soak
    python -m bench.soak --minutes 1 --rate 20 --json out.json

Runs ``python -m faas_cli up`` as a subprocess (its own session, free ports, a temporary
data dir, policy adaptive: bench/upproc.py) and registers one Python handler function (an
echo). Then it sends ``--rate`` calls a second at fixed intervals (an open loop: a slow
platform does not slow the arrivals), ``--sync-share`` of them synchronous, the rest async;
at most ``--max-in-flight`` at once (an arrival beyond that is counted as skipped, not sent).
Every ``--sample-s`` seconds it reads the resident memory of ``faas up`` and of each process
it started (psutil where installed, else VmRSS in /proc/<pid>/status; the functions'
containers are not counted). At the end it waits for every accepted call (answered 2xx) to
be recorded, reads the store's records over the HTTP API and reports: memory first / last /
max per process, calls accepted, recorded DONE, lost (accepted but not DONE), recorded
twice, and the restarts faas up made. Exit code 1 if a call was lost or a process restarted.

Not part of CI (it takes minutes): run it on a quiet machine; figures in docs/benchmarks.md.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import aiohttp

from bench.functions import FUNCTIONS, RUNTIMES
from bench.upproc import UpProcess

FUNCTION = FUNCTIONS["py"]  # a Python handler echo, no dependencies
_ANSWER = aiohttp.ClientTimeout(total=120)


def rss_kib(pid: int) -> int | None:
    """Resident memory of ``pid`` in KiB; None if it is gone."""
    try:
        import psutil  # optional
    except ImportError:
        pass
    else:
        try:
            return int(psutil.Process(pid).memory_info().rss // 1024)
        except psutil.Error:
            return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class Soak:
    minutes: float
    rate: float
    sync_share: float
    samples: list[dict[str, Any]] = field(default_factory=list)  # {"t": s, "<process>": KiB, ...}
    sent: int = 0
    skipped: int = 0
    accepted: dict[str, str] = field(default_factory=dict)  # call id -> "async" | "sync"
    answers: Counter[str] = field(default_factory=Counter)
    done: int = 0
    lost: list[str] = field(default_factory=list)
    twice: int = 0
    restarts: int = 0

    def sample(self, up: UpProcess, t: float) -> None:
        row: dict[str, Any] = {"t": round(t, 1)}
        for name, pid in {"faas-up": up.pid, **{n: p.pid for n, p in up.children().items()}}.items():
            if (kib := rss_kib(pid)) is not None:
                row[name] = kib
        self.samples.append(row)

    def memory(self) -> dict[str, dict[str, float]]:
        """MiB per process: first, last and max sample."""
        names = sorted({k for row in self.samples for k in row if k != "t"})
        out = {}
        for name in names:
            seen = [row[name] / 1024 for row in self.samples if name in row]
            out[name] = {"first": round(seen[0], 1), "last": round(seen[-1], 1), "max": round(max(seen), 1)}
        return out

    def report(self) -> str:
        kinds = Counter(self.accepted.values())
        lines = [
            f"soak: {self.minutes:g} min at {self.rate:g} calls/s ({self.sync_share:.0%} sync), "
            f"{len(self.samples)} memory samples",
            f"{'process':<12} {'first MiB':>10} {'last MiB':>9} {'max MiB':>8} {'last-first':>11}",
        ]
        for name, m in self.memory().items():
            lines.append(
                f"{name:<12} {m['first']:>10.1f} {m['last']:>9.1f} {m['max']:>8.1f} {m['last'] - m['first']:>+11.1f}"
            )
        lines.append(
            f"calls: {self.sent} sent, {self.skipped} skipped (too many in flight), {len(self.accepted)} accepted "
            f"({kinds['async']} async, {kinds['sync']} sync), {self.done} recorded DONE, lost {len(self.lost)}, "
            f"recorded twice {self.twice}; faas up restarts: {self.restarts}"
        )
        lines.append(f"answers: {dict(sorted(self.answers.items()))}")
        return "\n".join(lines)


async def _register(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/runtimes", json=RUNTIMES[FUNCTION.runtime]) as resp:
        if resp.status != 201:
            raise RuntimeError(f"registering the runtime: {resp.status} {await resp.text()}")
    form = aiohttp.FormData()
    form.add_field("name", FUNCTION.name)
    form.add_field("runtime", FUNCTION.runtime)
    form.add_field("handler", FUNCTION.handler or "")
    form.add_field("module", FUNCTION.archive(), filename="fn.zip", content_type="application/zip")
    async with http.post("/v1/functions", data=form) as resp:
        if resp.status != 201:
            raise RuntimeError(f"registering {FUNCTION.name}: {resp.status} {await resp.text()}")
    async with http.post(f"/v1/functions/{FUNCTION.name}/invoke", json={"first": True}, timeout=_ANSWER) as resp:
        if resp.status != 200 or (await resp.json())["status"] != "DONE":
            raise RuntimeError(f"the first call: {resp.status} {await resp.text()}")


async def _call(http: aiohttp.ClientSession, soak: Soak, i: int, sync: bool) -> None:
    kind = "sync" if sync else "async"
    query = "" if sync else "?async=true"
    try:
        async with http.post(f"/v1/functions/{FUNCTION.name}/invoke{query}", json={"i": i}, timeout=_ANSWER) as resp:
            soak.answers[f"{kind} {resp.status}"] += 1
            if 200 <= resp.status < 300:
                soak.accepted[(await resp.json())["id"]] = kind
    except (aiohttp.ClientError, TimeoutError) as err:
        soak.answers[f"{kind} {type(err).__name__}"] += 1


async def _sampler(up: UpProcess, soak: Soak, every_s: float, t0: float) -> None:
    while True:
        soak.sample(up, time.monotonic() - t0)
        await asyncio.sleep(every_s)


async def _tally(http: aiohttp.ClientSession, soak: Soak, timeout: float) -> None:
    """Wait until every accepted call has a final record (or ``timeout``); count them."""
    deadline = time.monotonic() + timeout
    while True:
        by_id: Counter[str] = Counter()
        status: dict[str, str] = {}
        cursor: str | None = None
        while True:
            params = {"function": FUNCTION.name, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            async with http.get("/v1/calls", params=params) as resp:
                resp.raise_for_status()
                page = await resp.json()
            for record in page["items"]:
                by_id[record["id"]] += 1
                status[record["id"]] = record["status"]
            if not (cursor := page.get("next_cursor")):
                break
        pending = [i for i in soak.accepted if status.get(i) in (None, "QUEUED", "RUNNING")]
        if not pending or time.monotonic() > deadline:
            soak.done = sum(1 for i in soak.accepted if status.get(i) == "DONE")
            soak.lost = [i for i in soak.accepted if status.get(i) != "DONE"]
            soak.twice = sum(1 for n in by_id.values() if n > 1)
            return
        await asyncio.sleep(1.0)


async def run(args: argparse.Namespace, data_dir: Path) -> Soak:
    soak = Soak(args.minutes, args.rate, args.sync_share)
    up = UpProcess(data_dir)
    await up.start()
    say(f"faas up ready (pid {up.pid}, {up.url}); its log: {up.log_path}")
    try:
        connector = aiohttp.TCPConnector(limit=args.max_in_flight)
        async with aiohttp.ClientSession(up.url, headers=up.headers, connector=connector) as http:
            await _register(http)
            say("the function answers; the soak starts")
            t0 = time.monotonic()
            sampler = asyncio.create_task(_sampler(up, soak, args.sample_s, t0), name="rss-sampler")
            in_flight: set[asyncio.Task[None]] = set()
            total = int(args.minutes * 60 * args.rate)
            for i in range(total):
                await asyncio.sleep(max(0.0, t0 + i / args.rate - time.monotonic()))
                if len(in_flight) >= args.max_in_flight:
                    soak.skipped += 1
                    continue
                # the sync share spread evenly: call i is sync when the running share crosses a whole
                sync = int((i + 1) * args.sync_share) > int(i * args.sync_share)
                task = asyncio.create_task(_call(http, soak, i, sync), name=f"call-{i}")
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                soak.sent += 1
            await asyncio.gather(*in_flight)
            sampler.cancel()
            soak.sample(up, time.monotonic() - t0)
            say(f"{soak.sent} calls sent in {time.monotonic() - t0:.1f}s; waiting for their records")
            await _tally(http, soak, timeout=120)
        soak.restarts = up.log().count("platform.child_restarted")
    finally:
        up.ctrl_c()
        await up.wait_exit(120)
        say("faas up stopped")
    return soak


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=20.0, help="calls a second")
    p.add_argument("--sync-share", type=float, default=0.5, help="the share of calls made synchronously")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between memory samples")
    p.add_argument("--max-in-flight", type=int, default=256)
    p.add_argument("--data-dir", type=Path, help="default: a temporary directory, removed after")
    p.add_argument("--json", type=Path, help="also write the figures and every sample here")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.minutes <= 0 or not 0 <= args.sync_share <= 1:
        p.error("--rate and --minutes must be positive, --sync-share within 0..1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="faas-soak-") as tmp:
        soak = asyncio.run(run(args, args.data_dir or Path(tmp) / "data"))
    print(soak.report())
    if args.json:
        figures = {f.name: getattr(soak, f.name) for f in fields(soak) if f.name != "accepted"}
        figures.update(accepted=len(soak.accepted), answers=dict(soak.answers), memory_mib=soak.memory())
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if soak.lost or soak.restarts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
