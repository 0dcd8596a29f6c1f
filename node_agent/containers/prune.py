"""Images this agent made or pulled and no longer needs are removed on a schedule.

Two kinds, and no other image is ever touched:

* dependency images (containers/deps.py: named ``faas-deps-…``, labelled with the node that
  built them): removed once no function's latest version needs them (the functions and
  runtimes buckets) and no call has started from them for ``idle_s``;
* job images this agent pulled (containers/images.py keeps the record, in a file that
  outlives a restart): removed once no job has started from them for ``idle_s``, unless a
  registered runtime uses the image.

An image any container uses (running or stopped) stays, whatever its kind; Docker refuses
to remove it anyway. An image that comes back into use is built or pulled again.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from common.lifecycle import wait_event
from common.logs import fields
from node_agent.containers.deps import DEPS_LABEL, DEPS_PREFIX, DependencyImages, deps_image_name
from node_agent.containers.docker import Engine
from node_agent.containers.images import image_ref
from schemas import FunctionRecord, InvalidMessage, RuntimeSpec, decode

log = logging.getLogger(__name__)

# The record of pulled images, in the agent's cache directory.
RECORD = "images.json"


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)
    # candidates kept because a container uses them or they were used within idle_s
    kept: list[str] = field(default_factory=list)


class ImagePruner:
    """``await pruner.run(stopping)`` (a side task) prunes every ``interval_s``; ``prune()`` once."""

    def __init__(
        self,
        engine: Engine,
        deps: DependencyImages,
        runtimes: KeyValue,
        functions: KeyValue,
        node_id: str,
        cache_dir: Path,
        interval_s: float,
        idle_s: float,
    ) -> None:
        self._engine, self._deps = engine, deps
        self._runtimes_kv, self._functions_kv = runtimes, functions
        self._node_id = node_id
        self._record = cache_dir / RECORD
        self.interval_s, self.idle_s = interval_s, idle_s
        # What was not seen used counts as used when the agent started.
        self._since = time.time()
        engine.usage.load(self._record)

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set (nats-py's KV listing may swallow the cancel of a stop)."""
        while not await wait_event(stopping, self.interval_s):
            try:
                await self.prune()
            except Exception:  # loop boundary: Docker or NATS away; the next round retries
                log.exception("images.prune_failed", extra=fields(node=self._node_id))

    async def prune(self) -> PruneResult:
        result = PruneResult()
        usage = self._engine.usage
        now = time.time()
        in_use = await self._engine.images_in_use()
        runtimes = await self._runtimes()
        needed = await self._needed_deps(runtimes)

        def idle(ref: str, since: float) -> bool:
            return now - usage.last_used(ref, since) >= self.idle_s

        for image in await self._engine.list_images(f"{DEPS_LABEL}={self._node_id}"):
            names = [t for t in image.tags if t.startswith(DEPS_PREFIX)]
            if not names:
                continue
            if image.id in in_use or any(n in needed or not idle(n, self._since) for n in names):
                result.kept.extend(names)
                continue
            for name in names:
                await self._remove(name, result)
                self._deps.forget(name)

        serving = {image_ref(r.image) for r in runtimes.values()}
        pulled = {ref: at for ref, at in usage.pulled.items() if ref not in serving}
        if pulled:
            ids = {t: i.id for i in await self._engine.list_images() for t in i.tags}
            for ref, at in pulled.items():
                if ref not in ids:  # removed by someone else: nothing to keep a record of
                    usage.forget(ref)
                elif ids[ref] in in_use or not idle(ref, at):
                    result.kept.append(ref)
                else:
                    await self._remove(ref, result)
        await asyncio.to_thread(usage.save, self._record)
        if result.removed:
            log.info("images.pruned", extra=fields(node=self._node_id, removed=",".join(result.removed)))
        return result

    async def _remove(self, ref: str, result: PruneResult) -> None:
        if await self._engine.remove_image(ref):
            self._engine.usage.forget(ref)
            result.removed.append(ref)
        else:  # a container took it meanwhile
            result.kept.append(ref)

    async def _runtimes(self) -> dict[str, RuntimeSpec]:
        found: dict[str, RuntimeSpec] = {}
        for name, value in await _latest(self._runtimes_kv):
            try:
                found[name] = decode(RuntimeSpec, value)
            except InvalidMessage:
                continue
        return found

    async def _needed_deps(self, runtimes: dict[str, RuntimeSpec]) -> set[str]:
        """The dependency images of every function's latest version."""
        needed: set[str] = set()
        for _, value in await _latest(self._functions_kv):
            try:
                record = decode(FunctionRecord, value)
            except InvalidMessage:
                continue
            runtime = runtimes.get(record.runtime)
            if runtime is not None and record.has_dependencies and runtime.dependencies:
                needed.add(deps_image_name(runtime, record))
        return needed


async def _latest(kv: KeyValue) -> list[tuple[str, bytes]]:
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    values = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue
        if entry.value:
            values.append((key, entry.value))
    return values
