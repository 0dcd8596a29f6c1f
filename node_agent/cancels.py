"""Cancel requests on a node: the cancels KV bucket (key = a call's or a job's id), mirrored in
memory, for the calls and the jobs this node runs.

A gateway puts a key to cancel a call or a job (gateway/cancels.py). What runs here first
registers its id (:meth:`CancelWatch.watching`), then asks :meth:`CancelWatch.requested`; a
key that appears after that calls the registered ``on_cancel``. Whichever of the two comes
second sees the other, so a cancel arriving while a call or job is being taken is never
missed. A redelivered call or job (its first node died) finds its key the same way.

``requested`` answers from memory once the watch has loaded the bucket (no NATS round trip
on a call's path), from a KV read before that. The bucket's keys expire with its TTL
(``cancel_ttl_s``, 7 days); the mirror holds what the bucket holds.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nats.js.kv import KeyValue

from common.kvmirror import KVMirror
from common.logs import fields

log = logging.getLogger(__name__)

OnCancel = Callable[[], None]


class CancelWatch:
    """``watch = CancelWatch(kv, node_id); await watch.start() ... await watch.stop()``."""

    def __init__(self, kv: KeyValue, node_id: str) -> None:
        self._node_id = node_id
        self._mirror = KVMirror(kv, "cancels", on_change=self._changed)
        self._watching: dict[str, OnCancel] = {}

    async def start(self, ready_s: float = 10.0) -> None:
        """Start the watch and wait (up to ``ready_s``) for the bucket's keys to be loaded, so
        that the first items taken are checked from memory. Idempotent."""
        await self._mirror.start()
        if not await self._mirror.wait_ready(ready_s):
            log.warning("cancels.not_loaded", extra=fields(node=self._node_id, after_s=ready_s))

    async def stop(self) -> None:
        await self._mirror.stop()

    @contextmanager
    def watching(self, item_id: str, on_cancel: OnCancel) -> Iterator[None]:
        """While in the block, a cancel request for ``item_id`` calls ``on_cancel`` (once the
        request is seen: at most once per key put, from the event loop, never raising)."""
        self._watching[item_id] = on_cancel
        try:
            yield
        finally:
            if self._watching.get(item_id) is on_cancel:
                del self._watching[item_id]

    async def requested(self, item_id: str) -> bool:
        """Whether a cancel of ``item_id`` was requested (as far as this node has seen)."""
        if self._mirror.ready:
            return self._mirror.held(item_id) is not None
        return await self._mirror.get(item_id) is not None

    def _changed(self, key: str, value: bytes | None) -> None:
        on_cancel = self._watching.get(key)
        if value is None or on_cancel is None:
            return
        log.info("cancel.seen", extra=fields(item=key, node=self._node_id))
        try:
            on_cancel()
        except Exception:  # the watch must go on for the others
            log.exception("cancel.callback_failed", extra=fields(item=key, node=self._node_id))
