"""common/kvmirror.py on a real nats-server: what the gateway reads registrations from."""

import asyncio

from nats.aio.client import Client

from common.kvmirror import KVMirror
from schemas import Layout


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_a_mirror_follows_writes_made_elsewhere(nc: Client, layout: Layout) -> None:
    kv = await nc.jetstream().key_value(layout.functions_bucket)
    await kv.put("before", b"1")
    mirror = KVMirror(kv, "functions")
    await mirror.start()
    try:
        await _until(lambda: asyncio.sleep(0, mirror.ready))
        assert await mirror.get("before") == b"1"

        await kv.put("before", b"2")  # another gateway's update
        await _until(lambda: _equals(mirror, "before", b"2"))
        await kv.delete("before")
        await _until(lambda: _equals(mirror, "before", None))
        assert await mirror.get("never") is None
    finally:
        await mirror.stop()


async def test_a_key_the_mirror_has_not_seen_yet_is_read_from_kv(nc: Client, layout: Layout) -> None:
    kv = await nc.jetstream().key_value(layout.functions_bucket)
    mirror = KVMirror(kv, "functions")  # not started: no watch at all
    await kv.put("fresh", b"v1")
    assert await mirror.get("fresh") == b"v1"


async def test_own_writes_apply_at_once_and_never_go_back(nc: Client, layout: Layout) -> None:
    kv = await nc.jetstream().key_value(layout.functions_bucket)
    mirror = KVMirror(kv, "functions")
    await mirror.start()
    try:
        await _until(lambda: asyncio.sleep(0, mirror.ready))
        revision = await kv.put("f", b"new")
        mirror.note("f", revision, b"new")
        assert await mirror.get("f") == b"new"
        mirror.note("f", revision - 1, b"older")  # a late update of an earlier revision
        assert await mirror.get("f") == b"new"
        await kv.delete("f")  # made here: the mirror holds the delete marker's revision
        await mirror.refresh("f")
        mirror.note("f", revision, b"new")  # the put's watch update, arriving late
        assert await mirror.get("f") is None
    finally:
        await mirror.stop()


async def _equals(mirror: KVMirror, key: str, value: bytes | None) -> bool:
    return await mirror.get(key) == value
