"""What a fault test does to a platform: deploy a tiny handler function, keep async and sync
callers busy, tell when it accepts calls again, and check that every accepted call is
recorded DONE exactly once, over the HTTP API as a user would."""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.functions import HANDLER_RUNTIME_CMD, PYTHON_IMAGE, zip_bytes

TINY = {
    "main.py": (
        "import time\ndef handler(params):\n    time.sleep(params.get('sleep', 0))\n    return {'i': params.get('i')}\n"
    ),
    "requirements.txt": "",
}
RUNTIME = "faultpy"
_TIMEOUT = aiohttp.ClientTimeout(total=40)


async def deploy(http: aiohttp.ClientSession, name: str) -> None:
    spec = {
        "name": RUNTIME,
        "image": PYTHON_IMAGE,
        "path": "/app",
        "dependencies": "",
        "run": "python3 main.py",
        "handler_command": HANDLER_RUNTIME_CMD["python"],
    }
    async with http.post("/v1/runtimes", json=spec) as resp:
        assert resp.status in (201, 409), await resp.text()
    form = aiohttp.FormData()
    form.add_field("name", name)
    form.add_field("runtime", RUNTIME)
    form.add_field("handler", "main:handler")
    form.add_field("module", zip_bytes(TINY), filename="tiny.zip")
    async with http.post("/v1/functions", data=form) as resp:
        assert resp.status == 201, await resp.text()


@dataclass
class Load:
    """Calls made until ``stop``: the ids of those answered 2xx, and what the others got."""

    accepted: dict[str, str] = field(default_factory=dict)  # call id -> "async" | "sync"
    answers: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str) -> int:
        return sum(1 for k in self.accepted.values() if k == kind)


async def run_load(url: str, headers: dict[str, str], fn: str, stop: asyncio.Event, clients: int = 2) -> Load:
    """``clients`` async callers and as many sync ones, each one call at a time."""
    load = Load()

    async def caller(kind: str, http: aiohttp.ClientSession) -> None:
        query = "?async=true" if kind == "async" else "?wait=30"
        i = 0
        while not stop.is_set():
            i += 1
            try:
                async with http.post(f"/v1/functions/{fn}/invoke{query}", json={"i": i}, timeout=_TIMEOUT) as resp:
                    load.answers[f"{kind} {resp.status}"] += 1
                    if 200 <= resp.status < 300:
                        load.accepted[(await resp.json())["id"]] = kind
                        await asyncio.sleep(0.02)
                        continue
            except (aiohttp.ClientError, TimeoutError) as err:
                # A sync caller whose gateway died: a connection error, not an accepted call.
                load.answers[f"{kind} {type(err).__name__}"] += 1
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession(url, headers=headers) as http:
        async with asyncio.TaskGroup() as tg:
            for n in range(clients):
                tg.create_task(caller("async", http), name=f"async-{n}")
                tg.create_task(caller("sync", http), name=f"sync-{n}")
    return load


async def until_accepting(url: str, headers: dict[str, str], fn: str, timeout: float = 90.0) -> float:
    """Seconds until a sync call is answered DONE and its record can be read back."""
    started = time.monotonic()
    last: Any = None
    async with aiohttp.ClientSession(url, headers=headers) as http:
        while time.monotonic() - started < timeout:
            try:
                async with http.post(f"/v1/functions/{fn}/invoke?wait=10", json={"probe": True}) as resp:
                    last = (resp.status, await resp.text())
                    if resp.status == 200 and (call := await resp.json())["status"] == "DONE":
                        # its record comes once the store has taken the events: under load
                        # that lags the sync answer, so the same call is asked for a while
                        read_until = time.monotonic() + 15.0
                        while time.monotonic() < read_until:
                            async with http.get(f"/v1/calls/{call['id']}") as got:
                                last = (got.status, await got.text())
                                if got.status == 200:
                                    return time.monotonic() - started
                            await asyncio.sleep(0.2)
            except (aiohttp.ClientError, TimeoutError) as err:
                last = repr(err)
            await asyncio.sleep(0.2)
    raise AssertionError(f"the platform accepts no call {timeout}s on; last answer {last}")


async def recorded(http: aiohttp.ClientSession, fn: str) -> dict[str, list[dict[str, Any]]]:
    """Every record of ``fn`` in the store, by call id (a list: it should hold one)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    cursor: str | None = None
    while True:
        params = {"function": fn, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        async with http.get("/v1/calls", params=params) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        for record in page["items"]:
            by_id.setdefault(record["id"], []).append(record)
        cursor = page.get("next_cursor")
        if not cursor:
            return by_id


async def all_done_once(http: aiohttp.ClientSession, fn: str, accepted: dict[str, str], timeout: float = 90.0) -> None:
    """Every accepted call is recorded, once, DONE (waiting for redeliveries to finish)."""
    started = time.monotonic()
    while True:
        try:
            by_id = await recorded(http, fn)
        except (aiohttp.ClientError, AssertionError):
            by_id = {}
        twice = {i: r for i, r in by_id.items() if len(r) > 1}
        assert not twice, f"calls recorded more than once: {twice}"
        ended = {i: r[0] for i, r in by_id.items() if r[0]["status"] not in ("QUEUED", "RUNNING")}
        failed = {i: r for i, r in ended.items() if i in accepted and r["status"] != "DONE"}
        assert not failed, f"accepted calls that did not end DONE: {failed}"
        missing = [i for i in accepted if i not in ended]
        if not missing:
            return
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{len(missing)} of {len(accepted)} accepted calls not DONE: {missing[:10]}")
        await asyncio.sleep(0.5)
