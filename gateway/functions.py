"""Registered functions: the functions KV bucket (key = name, value = ``FunctionRecord``,
history = versions) and their archives in the object store (object name = digest)."""

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError, NoKeysError, ObjectNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from common.kvmirror import KVMirror
from common.logs import fields
from gateway.errors import GatewayError, nats_unavailable, not_found
from schemas import FunctionRecord, InvalidMessage, decode, encode

log = logging.getLogger(__name__)

_PUT_RETRIES = 5


class Functions:
    def __init__(self, kv: KeyValue, artifacts: ObjectStore, changed: Callable[[], None] | None = None) -> None:
        self._kv = kv
        self._artifacts = artifacts
        # Told after a version is written or a function deleted (the artifact sweep).
        self._changed = changed or (lambda: None)
        # Every call reads its function: from this copy of the bucket, not a KV round trip.
        self.mirror = KVMirror(kv, "functions")

    async def find(self, name: str) -> FunctionRecord | None:
        """The latest version, or None if unknown or deleted."""
        with nats_unavailable("reading the functions bucket"):
            value = await self.mirror.get(name)
        return _decode_latest(value) if value else None

    async def get(self, name: str) -> FunctionRecord:
        record = await self.find(name)
        if record is None:
            raise not_found(f"function {name!r} is not registered")
        return record

    async def history(self, name: str) -> tuple[list[FunctionRecord], int]:
        """Every version still in KV history (oldest first) and the key's last revision (0: none).

        A deleted function keeps its history, so that version numbers are never reused.
        """
        with nats_unavailable("reading the function's history"):
            try:
                entries = await self._kv.history(name)
            except NoKeysError:
                return [], 0
        records = [r for e in entries if e.operation not in (KV_DEL, KV_PURGE) and (r := _decode(e.value))]
        return records, entries[-1].revision or 0

    async def versions(self, name: str) -> list[int]:
        records, _ = await self.history(name)
        return [r.version for r in records]

    async def names(self) -> list[str]:
        with nats_unavailable("listing functions"):
            try:
                return sorted(await self._kv.keys())
            except NoKeysError:
                return []

    async def all(self) -> list[FunctionRecord]:
        found = await asyncio.gather(*(self.find(n) for n in await self.names()))
        return [r for r in found if r is not None]

    async def store_archive(self, digest: str, data: bytes) -> None:
        """Put the archive under its digest unless it is there already (same bytes, same name)."""
        with nats_unavailable("storing the archive"):
            try:
                await self._artifacts.get_info(digest)
                return
            except ObjectNotFoundError:
                pass
            await self._artifacts.put(digest, data)
        log.info("artifact.stored", extra=fields(digest=digest, size=len(data)))

    async def add_version(self, draft: dict[str, Any]) -> FunctionRecord:
        """Write the next version of ``draft["name"]``: previous version + 1, starting at 1.

        The write expects the key's last revision, so two concurrent registrations cannot
        both take the same version number; the loser retries with the next one.
        """
        name = draft["name"]
        for _ in range(_PUT_RETRIES):
            records, last_revision = await self.history(name)
            version = max((r.version for r in records), default=0) + 1
            record = FunctionRecord.model_validate({**draft, "version": version})
            with nats_unavailable("saving the function"):
                try:
                    data = encode(record)
                    revision = await self._kv.update(name, data, last=last_revision)
                except KeyWrongLastSequenceError:
                    continue
            self.mirror.note(name, revision, data)
            self._changed()
            return record
        raise GatewayError(409, "conflict", f"function {name!r} is being registered concurrently: retry")

    async def delete(self, name: str) -> None:
        """A delete marker: history (hence version numbering) survives; the archives go with
        the next artifact sweep (gateway/artifact_sweep.py)."""
        await self.get(name)
        with nats_unavailable("deleting the function"):
            await self._kv.delete(name)
        await self.mirror.refresh(name)
        self._changed()


@functools.lru_cache(maxsize=1024)
def _decode_latest(value: bytes) -> FunctionRecord | None:
    """Every call reads its function: decode each stored value once (records are not mutated)."""
    return _decode(value)


def _decode(value: bytes | None) -> FunctionRecord | None:
    if not value:
        return None
    try:
        return decode(FunctionRecord, value)
    except InvalidMessage:
        log.warning("function.record.invalid", extra=fields(value=value[:200]))
        return None
