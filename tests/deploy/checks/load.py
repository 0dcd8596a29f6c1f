"""A steady stream of async invocations through every gateway, with a fault injected meanwhile.

:func:`under_load` sends ``rate`` calls a second (alternating gateways) for ``seconds``, runs
the fault (a coroutine function) at ``fault_at`` seconds (through ``gateways``: default all), and returns what each
request got. :func:`settle` then waits for every accepted call's record to be final.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from tests.deploy.deployment import Deployment, invoke_async, wait_done
from tests.deploy.hosts import Host


@dataclass
class Sent:
    at: float
    gateway: str
    status: int
    body: dict[str, Any]


@dataclass
class LoadRun:
    sent: list[Sent] = field(default_factory=list)
    fault_s: float = 0.0

    @property
    def accepted(self) -> list[str]:
        return [s.body["id"] for s in self.sent if s.status == 202]

    def statuses(self) -> dict[int, int]:
        return dict(Counter(s.status for s in self.sent))

    def unexpected(self) -> dict[int, str]:
        """Answers other than 202 (accepted) and 503 (refused for now): one body per status."""
        return {s.status: str(s.body)[:160] for s in self.sent if s.status not in (202, 503)}

    def longest_refusal_s(self) -> float:
        """Per gateway, the longest span from the first refused request (not 202) to the next
        accepted one; the largest of them."""
        worst = 0.0
        for gw in {s.gateway for s in self.sent}:
            since: float | None = None
            for s in sorted((s for s in self.sent if s.gateway == gw), key=lambda s: s.at):
                if s.status != 202 and since is None:
                    since = s.at
                elif s.status == 202 and since is not None:
                    worst, since = max(worst, s.at - since), None
            if since is not None:
                worst = max(worst, time.monotonic() - since)
        return worst


async def under_load(
    d: Deployment,
    function: str,
    params: dict[str, Any],
    rate: float,
    seconds: float,
    fault_at: float,
    fault: Callable[[], Awaitable[None]],
    gateways: list[Host] | None = None,
) -> LoadRun:
    await d.wait_healthy()  # a host the previous check killed is back
    run = LoadRun()
    t0 = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    async with AsyncExitStack() as stack:
        sessions = [
            (gw.name, await stack.enter_async_context(d.http(gw, timeout_s=15))) for gw in gateways or d.gateways
        ]

        async def one(n: int) -> None:
            name, http = sessions[n % len(sessions)]
            at = time.monotonic()
            status, body = await invoke_async(http, function, params)
            run.sent.append(Sent(at - t0, name, status, body))

        async def inject() -> None:
            await asyncio.sleep(fault_at)
            f0 = time.monotonic()
            await fault()
            run.fault_s = time.monotonic() - f0

        injector = asyncio.create_task(inject(), name="fault")
        n = 0
        while (now := time.monotonic() - t0) < seconds or not injector.done():
            task = asyncio.create_task(one(n), name=f"call-{n}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, n / rate - now))
        await injector
        await asyncio.gather(*tasks)
    return run


async def settle(
    d: Deployment, run: LoadRun, timeout_s: float, gateway: Host | None = None
) -> tuple[dict[str, dict[str, Any]], float, list[str]]:
    """Wait for every accepted call to be final; also the problems: calls not DONE."""
    async with d.http(gateway or d.gateways[0], timeout_s=15) as http:
        records, took = await wait_done(http, run.accepted, timeout_s)
    problems = []
    statuses = Counter(records.get(i, {}).get("status", "MISSING") for i in run.accepted)
    if statuses.get("DONE", 0) != len(run.accepted):
        problems.append(f"of {len(run.accepted)} accepted: {dict(statuses)}")
    return records, took, problems
