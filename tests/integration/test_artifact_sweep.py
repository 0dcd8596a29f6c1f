"""Archives of removed versions leave the object store (gateway/artifact_sweep.py), on a real
nats-server, as the gateway's NATS user: the last N versions of each function are kept, an
archive two functions share stays while either keeps it, a deleted function keeps none,
and an archive stored without a version (a crash between the two steps) goes once its
grace period is over, not before."""

import hashlib

from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway.artifact_sweep import sweep
from schemas import Layout
from tests.integration.test_gateway_support import (
    make_zip,
    register_function,
    register_runtime,
    running_gateway,
    stored_objects,
    wait_until,
)


def _archive(n: int) -> tuple[bytes, str]:
    data = make_zip({"main.py": f"print({n})\n".encode()})
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def test_only_the_kept_versions_archives_stay(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    archives = [_archive(n) for n in range(5)]
    async with running_gateway(nats_server, layout, keep_versions=2, artifact_grace_s=0) as (_, http):
        await register_runtime(http)
        for data, _ in archives[:4]:  # f: versions 1-4
            await register_function(http, "f", data=data)
        await register_function(http, "g", data=archives[0][0])  # g shares f's first archive

        async def settled(expected: set[str]) -> bool:
            return set(await stored_objects(nc, layout)) == expected

        # Swept after each registration: f keeps versions 3 and 4, g keeps the first archive.
        kept = {archives[0][1], archives[2][1], archives[3][1]}
        await wait_until(lambda: settled(kept), what="versions past the last 2 removed")

        async with http.delete("/v1/functions/g") as r:
            assert r.status in (200, 204), await r.text()
        await wait_until(lambda: settled(kept - {archives[0][1]}), what="the shared archive removed with g")

        async with http.delete("/v1/functions/f") as r:
            assert r.status in (200, 204), await r.text()
        await wait_until(lambda: settled(set()), what="a deleted function's archives removed")

        # Registered again after its deletion: its earlier versions are not brought back.
        await register_function(http, "f", data=archives[4][0])
        await wait_until(lambda: settled({archives[4][1]}), what="only the new version's archive")


async def test_an_archive_without_a_version_goes_after_its_grace_period(
    nats_server: NatsServer, layout: Layout, nc: Client, gateway_nc: Client
) -> None:
    js = gateway_nc.jetstream()
    kv = await js.key_value(layout.functions_bucket)
    store = await js.object_store(layout.artifacts_bucket)
    data, digest = _archive(7)
    await store.put(digest, data)  # a registration that died before writing its version
    young = await sweep(kv, store, keep_versions=10, grace_s=3600)
    assert (young.removed, young.young) == (0, 1)
    assert await stored_objects(nc, layout) == [digest]
    old = await sweep(kv, store, keep_versions=10, grace_s=0)
    assert old.removed == 1 and await stored_objects(nc, layout) == []
    assert (await sweep(kv, store, keep_versions=10, grace_s=0)).removed == 0  # nothing left, no error
