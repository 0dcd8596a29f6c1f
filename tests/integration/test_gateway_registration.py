"""Registering runtimes and functions (original routes and /v1), listing, deleting, and every
bad input refused with a JSON error that leaves nothing half-registered."""

import hashlib
import json
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway
from schemas import FunctionRecord, Layout, RuntimeSpec, decode
from tests.integration.test_gateway_support import (
    CODE,
    kv_keys,
    make_tgz,
    make_zip,
    module_form,
    register_function,
    register_runtime,
    running_gateway,
    stored_objects,
)

MAX_UPLOAD = 64 * 1024


@pytest.fixture
async def http(nats_server: NatsServer, layout: Layout, nc: Client) -> AsyncIterator[aiohttp.ClientSession]:
    async with running_gateway(nats_server.url, layout, max_upload_bytes=MAX_UPLOAD) as (_, session):
        yield session


async def assert_error(r: aiohttp.ClientResponse, status: int, *fragments: str) -> str:
    body = await r.json()
    assert r.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    message: str = body["error"]["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


async def assert_nothing_registered(nc: Client, layout: Layout) -> None:
    assert await kv_keys(nc, layout.functions_bucket) == []
    assert await stored_objects(nc, layout) == []


# --- the original routes ---------------------------------------------------------------


async def test_legacy_register_runtime_and_list(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    body = {
        "image": "pythonruntime",
        "path": "/app",
        "dependencies": "pip install -r requirements.txt",
        "run": "x",
    }
    async with http.post("/registerRuntime", json=body) as r:
        assert r.status == 200
        assert await r.json() == {"runtime": "pythonruntime"}
    async with http.get("/runtimes") as r:
        assert await r.json() == ["pythonruntime"]
    kv = await nc.jetstream().key_value(layout.runtimes_bucket)
    spec = decode(RuntimeSpec, (await kv.get("pythonruntime")).value or b"")
    assert spec.dependencies == "pip install -r requirements.txt"


async def test_legacy_register_function_stores_archive_then_record(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    await register_runtime(http)
    data = make_tgz({**CODE, "requirements.txt": b"requests\n"})
    async with http.post("/registerFunction/pythonruntime/dice", data=module_form(data, "dice.tar.gz")) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"function": "dice", "version": 1}
    async with http.get("/functions") as r:
        assert await r.json() == ["dice"]

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    kv = await nc.jetstream().key_value(layout.functions_bucket)
    record = decode(FunctionRecord, (await kv.get("dice")).value or b"")
    assert (record.runtime, record.version, record.digest, record.size) == (
        "pythonruntime",
        1,
        digest,
        len(data),
    )
    assert record.archive == "tar.gz" and record.has_dependencies
    store = await nc.jetstream().object_store(layout.artifacts_bucket)
    assert (await store.get(digest)).data == data


async def test_versions_increase_and_identical_archives_are_stored_once(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    await register_runtime(http)
    data = make_zip(CODE)
    assert await register_function(http, data=data) == 1
    assert await register_function(http, data=data) == 2
    assert await register_function(http, data=make_zip({"main.py": b"print(2)"})) == 3
    assert len(await stored_objects(nc, layout)) == 2
    async with http.get("/v1/functions/dice") as r:
        body = await r.json()
    assert body["version"] == 3 and body["versions"] == [1, 2, 3]


# --- /v1 --------------------------------------------------------------------------------


async def test_v1_runtimes_crud(http: aiohttp.ClientSession) -> None:
    spec = {"name": "py311", "image": "python:3.11-slim", "run": "python3 main.py"}
    async with http.post("/v1/runtimes", json=spec) as r:
        assert r.status == 201
        created = await r.json()
    assert created["name"] == "py311" and created["path"] == "/app" and created["image"] == "python:3.11-slim"
    async with http.get("/v1/runtimes") as r:
        assert [s["name"] for s in await r.json()] == ["py311"]
    async with http.get("/v1/runtimes/py311") as r:
        assert (await r.json())["run"] == "python3 main.py"
    async with http.delete("/v1/runtimes/py311") as r:
        assert r.status == 200
    async with http.get("/v1/runtimes/py311") as r:
        await assert_error(r, 404, "runtime 'py311' is not registered")
    async with http.get("/v1/runtimes") as r:
        assert await r.json() == []


async def test_v1_functions_crud_with_limits(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    await register_runtime(http)
    form = module_form(
        make_zip({**CODE, "package.json": b'{"dependencies": {"x": "1"}}'}),
        name="dice",
        runtime="pythonruntime",
        limits=json.dumps({"timeout_s": 5, "memory_mb": 128}),
    )
    async with http.post("/v1/functions", data=form) as r:
        assert r.status == 201, await r.text()
        record = FunctionRecord.model_validate(await r.json())
    assert record.version == 1 and record.archive == "zip" and record.has_dependencies
    assert record.limits.timeout_s == 5 and record.limits.memory_mb == 128 and not record.limits.network

    async with http.get("/v1/functions") as r:
        assert [f["name"] for f in await r.json()] == ["dice"]
    async with http.get("/v1/functions/dice") as r:
        assert (await r.json())["versions"] == [1]

    async with http.delete("/v1/runtimes/pythonruntime") as r:
        await assert_error(r, 409, "used by functions: dice")
    async with http.delete("/v1/functions/dice") as r:
        assert r.status == 200
    async with http.get("/v1/functions/dice") as r:
        await assert_error(r, 404, "function 'dice' is not registered")
    async with http.get("/functions") as r:
        assert await r.json() == []
    # History survives a delete: a new registration does not reuse version 1.
    assert await register_function(http) == 2
    async with http.delete("/v1/functions/dice") as r:
        assert r.status == 200
    async with http.delete("/v1/runtimes/pythonruntime") as r:
        assert r.status == 200


# --- bad input --------------------------------------------------------------------------


async def test_unknown_runtime_is_404_and_nothing_is_stored(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    async with http.post("/registerFunction/nope/dice", data=module_form(make_zip(CODE))) as r:
        await assert_error(r, 404, "runtime 'nope' is not registered")
    form = module_form(make_zip(CODE), name="dice", runtime="nope")
    async with http.post("/v1/functions", data=form) as r:
        await assert_error(r, 404, "'nope'")
    await assert_nothing_registered(nc, layout)


@pytest.mark.parametrize("path", ["/registerRuntime", "/v1/runtimes"])
async def test_malformed_json_is_400(http: aiohttp.ClientSession, path: str) -> None:
    async with http.post(path, data=b'{"image": "x",', headers={"Content-Type": "application/json"}) as r:
        await assert_error(r, 400, "invalid JSON")
    async with http.post(path, data=b"") as r:
        await assert_error(r, 400, "empty body")


@pytest.mark.parametrize("path", ["/registerRuntime", "/v1/runtimes"])
async def test_missing_runtime_fields_are_named(http: aiohttp.ClientSession, path: str) -> None:
    async with http.post(path, json={"name": "rt"}) as r:
        await assert_error(r, 400, "missing fields", "image", "run")
    async with http.post(path, json={"name": "rt", "image": "img", "run": "x", "colour": "red"}) as r:
        await assert_error(r, 400, "colour")


@pytest.mark.parametrize("body", [{"image": "python:3.11", "run": "x"}, {"name": "a.b", "image": "i", "run": "x"}])
async def test_unsafe_runtime_names_are_400(
    http: aiohttp.ClientSession, nc: Client, layout: Layout, body: dict[str, str]
) -> None:
    async with http.post("/registerRuntime", json=body) as r:
        await assert_error(r, 400, "'-' and '_'" if "name" not in body else "letters, digits")
    assert await kv_keys(nc, layout.runtimes_bucket) == []


@pytest.mark.parametrize("name", ["a.b", "a*", "x%20y", "-lead"])
async def test_unsafe_function_names_are_400(
    http: aiohttp.ClientSession, nc: Client, layout: Layout, name: str
) -> None:
    await register_runtime(http)
    async with http.post(f"/registerFunction/pythonruntime/{name}", data=module_form(make_zip(CODE))) as r:
        await assert_error(r, 400, "invalid function name", "letters, digits, '-' or '_'")
    await assert_nothing_registered(nc, layout)


async def test_not_an_archive_is_400(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    await register_runtime(http)
    # A good name does not make a good archive: the format is found from the content.
    async with http.post("/registerFunction/pythonruntime/dice", data=module_form(b"print(1)\n", "f.zip")) as r:
        await assert_error(r, 400, "neither a zip nor a tar.gz")
    await assert_nothing_registered(nc, layout)


@pytest.mark.parametrize(("entry", "fragment"), [("/etc/cron.d/x", "absolute path"), ("../x.py", "'..'")])
async def test_unsafe_entries_are_400_naming_the_entry(
    http: aiohttp.ClientSession, nc: Client, layout: Layout, entry: str, fragment: str
) -> None:
    await register_runtime(http)
    for data in (make_zip({**CODE, entry: b"x"}), make_tgz({**CODE, entry: b"x"})):
        async with http.post("/registerFunction/pythonruntime/dice", data=module_form(data)) as r:
            await assert_error(r, 400, fragment, entry)
    await assert_nothing_registered(nc, layout)


async def test_upload_over_the_limit_is_413(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    await register_runtime(http)
    big = make_zip({"main.py": random.Random(1).randbytes(2 * MAX_UPLOAD)})  # incompressible
    assert len(big) > MAX_UPLOAD
    async with http.post("/registerFunction/pythonruntime/dice", data=module_form(big)) as r:
        await assert_error(r, 413, "limit")
    await assert_nothing_registered(nc, layout)


async def test_archive_expanding_past_the_limit_is_400(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    await register_runtime(http)
    bomb = make_zip({**CODE, "zeros": b"\0" * (MAX_UPLOAD * 5)})
    assert len(bomb) < MAX_UPLOAD
    async with http.post("/registerFunction/pythonruntime/dice", data=module_form(bomb)) as r:
        await assert_error(r, 400, "expands to more than")
    await assert_nothing_registered(nc, layout)


async def test_v1_function_missing_fields_are_named(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("name", "dice")
    async with http.post("/v1/functions", data=form) as r:
        await assert_error(r, 400, "missing fields: runtime, module")
    async with http.post("/v1/functions", json={"name": "dice"}) as r:
        await assert_error(r, 415, "multipart/form-data")
    await assert_nothing_registered(nc, layout)


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ('{"timeout_s": 0}', "timeout_s"),
        ('{"memory_mb": 1000000}', "memory_mb"),
        ('{"gpus": 2}', "gpus"),
        ("{oops", "invalid JSON"),
    ],
)
async def test_v1_bad_limits_are_400_naming_the_field(
    http: aiohttp.ClientSession, nc: Client, layout: Layout, limits: str, fragment: str
) -> None:
    await register_runtime(http)
    form = module_form(make_zip(CODE), name="dice", runtime="pythonruntime", limits=limits)
    async with http.post("/v1/functions", data=form) as r:
        await assert_error(r, 400, "invalid limits", fragment)
    await assert_nothing_registered(nc, layout)


async def test_unknown_routes_and_methods_get_the_json_error_shape(http: aiohttp.ClientSession) -> None:
    async with http.get("/nope") as r:
        await assert_error(r, 404)
    async with http.put("/v1/runtimes") as r:
        await assert_error(r, 405)
        assert "GET" in r.headers["Allow"]


async def test_gateway_start_stop_is_idempotent(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    async with running_gateway(nats_server.url, layout) as (gw, http):
        await gw.start()
        async with http.get("/healthz") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ok"}
        port = gw.port
        assert port > 0
    await gw.stop()
    never_started = Gateway(gw.settings)
    await never_started.stop()
    with pytest.raises(RuntimeError):
        _ = never_started.port
