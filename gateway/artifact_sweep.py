"""Function archives no version keeps are removed from the object store.

What is kept: the archives of the last ``keep_versions`` versions of every function that is
not deleted (versions after its latest delete marker, if it was deleted and registered
again). A deleted function keeps none; an archive two functions share stays while either
keeps it. Everything else in the artifacts bucket is removed, unless it was stored less
than ``grace_s`` ago: a registration stores the archive before it writes the version that
refers to it, and that version must not find it gone.

One reconciling sweep does it all, so a crash between any two steps (an archive stored and
its version never written, a version deleted and its archive not yet removed) is made good
by the next sweep. It runs soon after each registration or deletion on this gateway
(:meth:`ArtifactSweeper.poke`) and every ``interval_s``; several gateways may sweep at once
(deleting twice is harmless).

A call pinned to a version whose archive is gone ends with ``BadArtifact`` on a node that
has not cached it (node_agent/containers/artifacts.py).
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.api import ObjectInfo
from nats.js.errors import NoKeysError, NotFoundError, ObjectNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from common.logs import fields
from schemas import FunctionRecord, InvalidMessage, decode

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    kept: int = 0
    removed: int = 0
    # unreferenced but stored within the grace period
    young: int = 0


async def kept_digests(kv: KeyValue, keep_versions: int) -> set[str]:
    """The digests the functions bucket still refers to (see the module docstring)."""
    try:
        names = await kv.keys()
    except NoKeysError:
        return set()
    keep: set[str] = set()
    for name in names:
        try:
            entries = await kv.history(name)
        except NoKeysError:
            continue
        live: list[FunctionRecord] = []
        for entry in entries:
            if entry.operation in (KV_DEL, KV_PURGE):
                live.clear()  # a deleted function's versions go with it
            elif entry.value:
                try:
                    live.append(decode(FunctionRecord, entry.value))
                except InvalidMessage:
                    continue
        live.sort(key=lambda r: r.version)
        keep.update(r.digest for r in live[-keep_versions:])
    return keep


async def sweep(kv: KeyValue, store: ObjectStore, keep_versions: int, grace_s: float) -> SweepResult:
    """Remove the archives no function keeps; returns what was done."""
    # Objects first, then what is kept: an archive stored in between is young (grace), and
    # a version written in between is read.
    try:
        objects = await store.list(ignore_deletes=True)
    except NotFoundError:
        return SweepResult()
    keep = await kept_digests(kv, keep_versions)
    now = datetime.now(UTC)
    result = SweepResult()
    for info in objects:
        if info.name in keep:
            result.kept += 1
            continue
        stored = _stored_at(info)
        if stored is None or (now - stored).total_seconds() < grace_s:
            result.young += 1
            continue
        try:
            await store.delete(info.name)
        except ObjectNotFoundError:  # another gateway's sweep was first
            continue
        result.removed += 1
        log.info("artifact.removed", extra=fields(digest=info.name, size=info.size))
    return result


def _stored_at(info: ObjectInfo) -> datetime | None:
    """When the object was stored (its meta's mtime, RFC 3339); None if unreadable."""
    text = (info.mtime or "").replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Go writes nanoseconds; Python reads up to microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class ArtifactSweeper:
    """``await sweeper.start()`` ... ``poke()`` after a change ... ``await sweeper.stop()``."""

    def __init__(self, kv: KeyValue, store: ObjectStore, keep_versions: int, interval_s: float, grace_s: float) -> None:
        self._kv, self._store = kv, store
        self.keep_versions, self.interval_s, self.grace_s = keep_versions, interval_s, grace_s
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sweeps = 0

    def poke(self) -> None:
        """A version was registered or a function deleted: sweep soon."""
        self._poked.set()

    async def start(self) -> None:
        """The first sweep at once (what a crash left), then on pokes and every interval."""
        if self._task is None:
            self._poked.set()
            self._task = asyncio.create_task(self._run(), name="gateway:artifact-sweep")

    async def stop(self) -> None:
        # nats-py's watchers (KV history, object listing) may swallow a cancel: the flag and
        # the event end the loop all the same.
        self._stopping = True
        self._poked.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._poked.wait()
            except TimeoutError:
                pass
            if self._stopping:
                return
            self._poked.clear()
            try:
                result = await sweep(self._kv, self._store, self.keep_versions, self.grace_s)
            except Exception:  # loop boundary: NATS away for a moment; the next sweep retries
                log.exception("artifact.sweep_failed")
                continue
            finally:
                self.sweeps += 1
            if result.removed:
                log.info("artifact.swept", extra=fields(removed=result.removed, kept=result.kept, young=result.young))
