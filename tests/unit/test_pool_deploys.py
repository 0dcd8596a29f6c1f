"""The new-versions watch survives a failed watch (NATS away): it opens another."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from node_agent.pools import deploys
from node_agent.pools.keys import PoolKey
from schemas import FunctionRecord, encode

FN = FunctionRecord(name="f", runtime="python", version=1, digest="sha256:" + "0" * 64, size=1, archive="zip")


class Watcher:
    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries

    async def updates(self, timeout: float | None = None) -> Any:
        if not self.entries:
            await asyncio.Event().wait()  # nothing more: wait for ever, as a quiet watch does
        return self.entries.pop(0)

    async def stop(self) -> None: ...


class KV:
    def __init__(self) -> None:
        self.opened = 0

    async def watchall(self) -> Watcher:
        self.opened += 1
        if self.opened == 1:
            raise ConnectionError("nats away")
        return Watcher([None, SimpleNamespace(key="f", value=encode(FN))])


class Pools:
    def __init__(self) -> None:
        self.expected: list[PoolKey] = []
        self.seen = asyncio.Event()

    def expect(self, key: PoolKey, ttl_s: float) -> None:
        self.expected.append(key)
        self.seen.set()


async def test_a_failed_watch_is_opened_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploys, "RETRY_S", 0.0)
    kv, pools = KV(), Pools()
    task = asyncio.create_task(deploys.follow_new_versions(kv, pools, lambda rt: True, 60))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await pools.seen.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert kv.opened == 2 and pools.expected == [PoolKey.runtime("python")]
