"""Registered runtimes: the runtimes KV bucket (key = name, value = ``RuntimeSpec``)."""

import asyncio
import functools

from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from common.kvmirror import KVMirror
from gateway.errors import nats_unavailable, not_found
from schemas import InvalidMessage, RuntimeSpec, decode, encode


class Runtimes:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        # Every call reads its runtime: from this copy of the bucket, not a KV round trip.
        self.mirror = KVMirror(kv, "runtimes")

    async def put(self, spec: RuntimeSpec) -> RuntimeSpec:
        """Register or replace (a new image for the same name is an upgrade, not a conflict)."""
        data = encode(spec)
        with nats_unavailable("saving the runtime"):
            revision = await self._kv.put(spec.name, data)
        self.mirror.note(spec.name, revision, data)
        return spec

    async def find(self, name: str) -> RuntimeSpec | None:
        with nats_unavailable("reading the runtimes bucket"):
            value = await self.mirror.get(name)
        return _decode(value) if value else None

    async def get(self, name: str) -> RuntimeSpec:
        spec = await self.find(name)
        if spec is None:
            raise not_found(f"runtime {name!r} is not registered")
        return spec

    async def names(self) -> list[str]:
        with nats_unavailable("listing runtimes"):
            try:
                return sorted(await self._kv.keys())
            except NoKeysError:
                return []

    async def all(self) -> list[RuntimeSpec]:
        found = await asyncio.gather(*(self.find(n) for n in await self.names()))
        return [spec for spec in found if spec is not None]

    async def delete(self, name: str) -> None:
        await self.get(name)
        with nats_unavailable("deleting the runtime"):
            await self._kv.delete(name)
        await self.mirror.refresh(name)


@functools.lru_cache(maxsize=256)
def _decode(value: bytes) -> RuntimeSpec | None:
    """Every call reads its runtime: decode each stored value once (specs are not mutated)."""
    try:
        return decode(RuntimeSpec, value)
    except InvalidMessage:
        return None
