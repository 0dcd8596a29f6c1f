"""Which containers the agent created, from Docker's event stream.

The agent labels a container made for one call ``faas.call=<call id>`` (a cold start: policy
``none`` or a fallback), a pool container ``faas.pool=<key>``, a dependency build
``faas.build=<function>``. Watching ``create`` events tells, per call, whether it started a
container, without touching the platform.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiodocker

BARRIER_LABEL = "faas.bench.barrier"


@dataclass(frozen=True)
class Created:
    cid: str
    at: float  # wall clock, as Docker stamps it (seconds)
    labels: dict[str, str]

    @property
    def kind(self) -> str:
        for label, kind in (("faas.call", "call"), ("faas.pool", "pool"), ("faas.build", "build")):
            if label in self.labels:
                return kind
        return "other"


class ContainerWatch:
    """``async with ContainerWatch(image) as w: ...; await w.sync(); w.cold_calls()``"""

    def __init__(self, image: str = "faas-python") -> None:
        self._image = image
        self._docker: aiodocker.Docker | None = None
        self._task: asyncio.Task[None] | None = None
        self.created: list[Created] = []
        self._seen: dict[str, asyncio.Event] = {}

    async def __aenter__(self) -> "ContainerWatch":
        self._docker = aiodocker.Docker()
        filters = json.dumps({"type": ["container"], "event": ["create"]})
        sub = self._docker.events.subscribe(filters=filters)  # type: ignore[no-untyped-call]
        self._task = asyncio.create_task(self._read(sub), name="container-watch")
        await self.sync()  # the stream is connected: nothing created from now on is missed
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._docker is not None:
            await self._docker.events.stop()  # type: ignore[no-untyped-call]
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._docker is not None:
            await self._docker.close()

    async def _read(self, sub: Any) -> None:
        while (event := await sub.get()) is not None:
            actor = event.get("Actor") or {}
            labels = dict(actor.get("Attributes") or {})
            at = event.get("timeNano")
            stamp = at / 1e9 if isinstance(at, int) else time.time()
            self.created.append(Created(actor.get("ID", ""), stamp, labels))
            if (token := labels.get(BARRIER_LABEL)) in self._seen:
                self._seen[token].set()

    async def sync(self, timeout: float = 30.0) -> None:
        """Create (never start) and remove a marker container and wait for its event: every
        container created before this call has been seen when it returns."""
        assert self._docker is not None
        token = uuid.uuid4().hex
        seen = self._seen[token] = asyncio.Event()
        c = await self._docker.containers.create(
            {"Image": self._image, "Cmd": ["true"], "Labels": {BARRIER_LABEL: token}, "NetworkDisabled": True}
        )
        try:
            await asyncio.wait_for(seen.wait(), timeout)
        finally:
            del self._seen[token]
            await c.delete(force=True)

    def since(self, t: float) -> list[Created]:
        return [c for c in self.created if c.at >= t and c.kind != "other"]

    def cold_calls(self) -> set[str]:
        """Ids of the calls that got a container of their own."""
        return {c.labels["faas.call"] for c in self.created if c.kind == "call"}

    def counts(self, since: float = 0.0) -> dict[str, int]:
        out = {"call": 0, "pool": 0, "build": 0}
        for c in self.since(since):
            out[c.kind] += 1
        return out
