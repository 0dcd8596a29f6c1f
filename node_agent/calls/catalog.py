"""Looks up runtimes and function versions in KV. Function versions never change, so they
are cached; runtimes are cached for two seconds (a re-registered runtime applies within it),
and so is a function's latest version when a nested call asks for it (:meth:`latest`)."""

import time

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from node_agent.errors import FunctionNotFound, RuntimeNotFound
from schemas import FunctionRecord, RuntimeSpec, decode


class Catalog:
    def __init__(self, runtimes: KeyValue, functions: KeyValue, runtime_ttl_s: float = 2.0) -> None:
        self._runtimes = runtimes
        self._functions = functions
        self._versions: dict[tuple[str, int], FunctionRecord] = {}
        # Runtimes are read at most every runtime_ttl_s: a re-registration applies within it.
        self._ttl = runtime_ttl_s
        self._runtime_cache: dict[str, tuple[float, RuntimeSpec]] = {}
        self._latest: dict[str, tuple[float, FunctionRecord]] = {}

    async def runtime(self, name: str) -> RuntimeSpec:
        now = time.monotonic()
        cached = self._runtime_cache.get(name)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        spec = await self._read_runtime(name)
        self._runtime_cache[name] = (now, spec)
        return spec

    async def _read_runtime(self, name: str) -> RuntimeSpec:
        try:
            entry = await self._runtimes.get(name)
        except KeyNotFoundError:
            raise RuntimeNotFound(f"runtime {name!r} is not registered") from None
        if not entry.value:
            raise RuntimeNotFound(f"runtime {name!r} is not registered")
        return decode(RuntimeSpec, entry.value)

    async def latest(self, name: str) -> FunctionRecord:
        """A function's latest version, read at most every ``runtime_ttl_s``: a nested call
        (node_agent/nested) names a function, not a version, and must not pay a KV read each
        time; a new version is called by nested calls within that time."""
        cached = self._latest.get(name)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        return await self.function(name, None)

    def remember(self, function: FunctionRecord) -> None:
        """A version seen elsewhere (the functions bucket's watch): its calls need no read."""
        self._versions[(function.name, function.version)] = function

    async def function(self, name: str, version: int | None) -> FunctionRecord:
        if version is not None and (name, version) in self._versions:
            return self._versions[(name, version)]
        try:
            entry = await self._functions.get(name)
        except KeyNotFoundError:
            raise FunctionNotFound(f"function {name!r} is not registered") from None
        if not entry.value:
            raise FunctionNotFound(f"function {name!r} is not registered")
        latest = decode(FunctionRecord, entry.value)
        self._versions[(name, latest.version)] = latest
        self._latest[name] = (time.monotonic(), latest)
        if version is None or version == latest.version:
            return latest
        for old in await self._functions.history(name):
            if old.value:
                rec = decode(FunctionRecord, old.value)
                self._versions[(name, rec.version)] = rec
        if (name, version) not in self._versions:
            raise FunctionNotFound(f"function {name!r} has no version {version}")
        return self._versions[(name, version)]
