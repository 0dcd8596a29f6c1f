"""New function versions announce their first call to the stem-cell layer (adaptive).

A function version deployed now is likely to be called soon, perhaps with others at once (a
release of several functions). Each new version whose runtime this node serves, and that a
stem cell can run, keeps one more stem cell of its runtime ready until its first call comes
or ``ttl_s`` passes, so a burst of first calls meets stem cells instead of cold starts.
The version's record and code are fetched at once too (the artifact from the object store,
its code tar body built), so that the first call finds them in the node's caches instead of
doing that work while the caller waits, beside the other first calls of a release.
"""

import asyncio
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from common.logs import fields
from node_agent.calls.catalog import Catalog
from node_agent.containers.artifacts import ArtifactCache
from node_agent.pools.keys import PoolKey, warm_runtime_eligible
from node_agent.pools.pool import Pools
from schemas import FunctionRecord, InvalidMessage, decode

log = logging.getLogger(__name__)

RETRY_S = 2.0
# A prefetch that takes longer than this is left to the first call.
PREFETCH_S = 10.0


class Prefetch:
    """What a node fetches for a new version before its first call: its record (into the
    catalog) and its code (into the artifact cache)."""

    def __init__(self, catalog: Catalog, artifacts: ArtifactCache) -> None:
        self._catalog = catalog
        self._artifacts = artifacts

    async def __call__(self, function: FunctionRecord) -> None:
        self._catalog.remember(function)
        try:
            async with asyncio.timeout(PREFETCH_S):
                runtime = await self._catalog.runtime(function.runtime)
                await self._artifacts.code_body(function.digest, runtime.path)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the first call fetches it then, and says what is wrong
            log.info("pool.prefetch_failed", extra=fields(function=function.name, error=str(err)[:200]))


async def follow_new_versions(
    kv: KeyValue, pools: Pools, serves: Callable[[str], bool], ttl_s: float, prefetch: Prefetch | None = None
) -> None:
    """Watch the functions bucket until cancelled. A watch that fails (NATS away) is opened
    again after a pause: announcements are an optimisation, not worth stopping the agent."""
    while True:
        try:
            await _watch(kv, pools, serves, ttl_s, prefetch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pool.versions_watch_failed")
            await asyncio.sleep(RETRY_S)


async def _watch(
    kv: KeyValue, pools: Pools, serves: Callable[[str], bool], ttl_s: float, prefetch: Prefetch | None
) -> None:
    """One watch; versions that exist already when it opens are not new."""
    watcher = await kv.watchall()
    current = False  # the watch first delivers each key's latest value, then None
    try:
        while True:
            entry = await watcher.updates(timeout=None)  # type: ignore[no-untyped-call]
            if entry is None:
                current = True
                continue
            if not current or not entry.value:
                continue
            try:
                function = decode(FunctionRecord, entry.value)
            except InvalidMessage:
                continue  # the gateway validates what it writes; not ours to judge here
            if serves(function.runtime) and function.sequence is None and warm_runtime_eligible(function):
                pools.expect(PoolKey.runtime(function.runtime), ttl_s)
                log.debug("pool.expect", extra=fields(function=function.name, version=function.version))
                if prefetch is not None:
                    await prefetch(function)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
