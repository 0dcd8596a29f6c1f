"""New function versions announce their first call to the stem-cell layer (adaptive).

A function version deployed now is likely to be called soon, perhaps with others at once (a
release of several functions). Each new version whose runtime this node serves, and that a
stem cell can run, keeps one more stem cell of its runtime ready until its first call comes
or ``ttl_s`` passes, so a burst of first calls meets stem cells instead of cold starts.
"""

import asyncio
import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from common.logs import fields
from node_agent.pools.keys import PoolKey, warm_runtime_eligible
from node_agent.pools.pool import Pools
from schemas import FunctionRecord, InvalidMessage, decode

log = logging.getLogger(__name__)

RETRY_S = 2.0


async def follow_new_versions(kv: KeyValue, pools: Pools, serves: Callable[[str], bool], ttl_s: float) -> None:
    """Watch the functions bucket until cancelled. A watch that fails (NATS away) is opened
    again after a pause: announcements are an optimisation, not worth stopping the agent."""
    while True:
        try:
            await _watch(kv, pools, serves, ttl_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pool.versions_watch_failed")
            await asyncio.sleep(RETRY_S)


async def _watch(kv: KeyValue, pools: Pools, serves: Callable[[str], bool], ttl_s: float) -> None:
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
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
