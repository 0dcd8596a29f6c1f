"""Following a KV bucket for as long as a service runs, through NATS outages.

nats-py's watch is an ordered consumer that makes itself again after missed heartbeats, so
a short outage only delays updates; a watch that fails all the same (its consumer cannot be
made, the connection closed under it) is opened again after a pause, and the bucket's
current values are delivered again from the start (``on_entry`` must take a value it has
seen already). Only a cancellation ends :func:`follow`.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.js.kv import KeyValue

from common.logs import fields

log = logging.getLogger(__name__)

RETRY_S = 1.0


async def follow(kv: KeyValue, on_entry: Callable[[KeyValue.Entry], Awaitable[None]], name: str) -> None:
    """Call ``on_entry`` with every entry of the bucket (its current values first, then every
    change, deletes included) until cancelled."""
    while True:
        try:
            watcher = await kv.watchall()
            try:
                while True:
                    entry = await watcher.updates(timeout=None)  # type: ignore[no-untyped-call]
                    if entry is not None:  # None: the current values are all in
                        await on_entry(entry)
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            raise
        except Exception:
            # Loop boundary: NATS away, the watch's consumer refused... open it again.
            log.warning("kv.watch_failed", exc_info=True, extra=fields(watch=name))
            await asyncio.sleep(RETRY_S)
