"""An in-memory copy of a KV bucket, kept up to date by a watch.

The gateway reads a function and its runtime on every call; two KV round trips per call
cost more than the rest of its work. A mirror answers from memory once the watch has
delivered the bucket's current values, and falls back to a KV read before that and for a key
it does not hold (a key created elsewhere an instant ago is found, not refused).

Consistency: a write made through :meth:`note` (the writer's own registration) is seen at
once; a write made by another process is seen when its watch update arrives (milliseconds).
Entries only move forward by revision, so a late watch update never undoes a newer write.

``on_change`` (optional) hears every entry the watch delivers, the current values first, a
delete as ``None``: for a reader that must act when a key appears (node_agent/cancels.py).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from common.lifecycle import wait_event
from common.logs import fields

log = logging.getLogger(__name__)


class KVMirror:
    def __init__(self, kv: KeyValue, name: str, on_change: Callable[[str, bytes | None], None] | None = None) -> None:
        self._kv = kv
        self._name = name
        self._on_change = on_change
        # key -> (revision, value); value None: deleted at that revision.
        self._entries: dict[str, tuple[int, bytes | None]] = {}
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """The watch has delivered every value the bucket held when it started."""
        return self._loaded.is_set()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the watch to have loaded the bucket."""
        return await wait_event(self._loaded, timeout)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name=f"kv-mirror:{self._name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loaded.clear()

    def note(self, key: str, revision: int, value: bytes | None) -> None:
        """Record a write (value None: a delete) this process has just made."""
        current = self._entries.get(key)
        if current is None or revision > current[0]:
            self._entries[key] = (revision, value)

    async def refresh(self, key: str) -> None:
        """Read a key from KV into the mirror (after a delete made here: the delete marker's
        revision is held, so that a late watch update of an older value cannot bring it back)."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError as err:
            # nats-py raises it for a deleted key too, with the delete marker as its entry
            marker = getattr(err, "entry", None)
            if marker is not None and marker.revision is not None:
                self.note(key, marker.revision, None)
            else:
                self._entries.pop(key, None)
            return
        if entry.revision is not None:
            self.note(key, entry.revision, entry.value or None)

    def held(self, key: str) -> bytes | None:
        """From memory only (no KV read): the key's value, None when it is unknown or deleted.
        Complete only while :attr:`ready`; for a check that must not cost a round trip per
        unknown key (the gateway's token check)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    async def get(self, key: str) -> bytes | None:
        """The key's latest value, None when it is unknown or deleted."""
        held = self._entries.get(key)
        if held is not None and self._loaded.is_set():
            return held[1]
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        value = entry.value or None
        if entry.revision is not None:
            self.note(key, entry.revision, value)
        return value

    async def _follow(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A watch can end with the connection; answer from KV until it is back.
                self._loaded.clear()
                log.warning("kv_mirror.watch_failed", extra=fields(bucket=self._name), exc_info=True)
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        watcher = await self._kv.watchall()
        try:
            while True:
                entry = await watcher.updates(timeout=None)  # type: ignore[no-untyped-call]
                if entry is None:  # the bucket's current values are all in
                    self._loaded.set()
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
                value = None if deleted else entry.value
                self.note(entry.key, entry.revision or 0, value)
                if self._on_change is not None:
                    self._on_change(entry.key, value)
        finally:
            self._loaded.clear()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
