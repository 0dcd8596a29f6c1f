"""The object store as the agent's artifact cache uses it: ``get`` by name."""

import hashlib
from dataclasses import dataclass

from nats.js.errors import ObjectNotFoundError


@dataclass
class Stored:
    data: bytes


class FakeObjectStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets = 0

    def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.objects[digest] = data
        return digest

    async def get(self, name: str) -> Stored:
        self.gets += 1
        if name not in self.objects:
            raise ObjectNotFoundError
        return Stored(self.objects[name])
