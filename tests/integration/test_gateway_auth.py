"""API tokens on a real gateway and nats-server: every route and every kind of caller (no
token, unknown, expired, revoked, each role), expiry, revocation seen by another gateway,
the admin token bootstrap file, and the token routes themselves."""

import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway
from gateway.routes import ROUTES
from gateway.tokens import Tokens
from schemas import JobStatus, Layout, LogPage, Role, TokenRecord, decode, token_digest
from tests.integration.test_gateway_jobs_support import StoreState, fake_job_store, job_record
from tests.integration.test_gateway_support import (
    CODE,
    bearer,
    call_record,
    fake_store,
    issue_token,
    make_zip,
    module_form,
    register_function,
    register_runtime,
    running_gateway,
    settings_for,
    wait_until,
)

ROLES = [r.value for r in Role]
JOB = {"name": "train", "container": {"image": "faas-python", "command": ["true"]}}


@dataclass
class Env:
    """A gateway with a runtime ``rt``, a function ``fn``, a call ``id1`` (number 1) and a
    queued job ``j1`` with logs in its (fake) store; ``admin`` is a session with the admin token."""

    gw: Gateway
    admin: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)

    def unique(self, stem: str) -> str:
        return f"{stem}{secrets.token_hex(4)}"


Prepare = Callable[[Env], Awaitable[tuple[str, dict[str, Any]]]]


def static(path: str, **kw: Any) -> Prepare:
    async def prepare(env: Env) -> tuple[str, dict[str, Any]]:
        return path, kw

    return prepare


async def _new_runtime_body(env: Env) -> tuple[str, dict[str, Any]]:
    return "", {"json": {"name": env.unique("rt"), "image": "img", "run": "x"}}


def runtime_post(path: str) -> Prepare:
    async def prepare(env: Env) -> tuple[str, dict[str, Any]]:
        return path, (await _new_runtime_body(env))[1]

    return prepare


async def legacy_function_upload(env: Env) -> tuple[str, dict[str, Any]]:
    return f"/registerFunction/rt/{env.unique('fn')}", {"data": module_form(make_zip(CODE))}


async def v1_function_upload(env: Env) -> tuple[str, dict[str, Any]]:
    return "/v1/functions", {"data": module_form(make_zip(CODE), name=env.unique("fn"), runtime="rt")}


async def sequence_post(env: Env) -> tuple[str, dict[str, Any]]:
    return "/v1/sequences", {"json": {"name": env.unique("seq"), "steps": ["fn", "fn"]}}


async def runtime_to_delete(env: Env) -> tuple[str, dict[str, Any]]:
    name = env.unique("gone")
    await register_runtime(env.admin, name)
    return f"/v1/runtimes/{name}", {}


async def function_to_delete(env: Env) -> tuple[str, dict[str, Any]]:
    name = env.unique("gone")
    await register_function(env.admin, name, "rt")
    return f"/v1/functions/{name}", {}


async def call_to_cancel(env: Env) -> tuple[str, dict[str, Any]]:
    async with env.admin.post("/v1/functions/fn/invoke?async=true", json={}) as r:
        assert r.status == 202
        call_id = (await r.json())["id"]
    return f"/v1/calls/{call_id}/cancel", {}


async def token_to_revoke(env: Env) -> tuple[str, dict[str, Any]]:
    name = env.unique("victim")
    await issue_token(env.admin, "read", name=name)
    return f"/v1/tokens/{name}", {}


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # as in gateway.routes.ROUTES
    prepare: Prepare
    ok: int
    roles: frozenset[str]  # what the issue says may call it

    def __str__(self) -> str:
        return f"{self.method} {self.route}"


ALL = frozenset(ROLES)
READERS = frozenset({"admin", "deploy", "read"})
CALL_READERS = frozenset({"admin", "deploy", "invoke", "read"})
INVOKERS = frozenset({"admin", "deploy", "invoke"})
DEPLOYERS = frozenset({"admin", "deploy"})
ADMINS = frozenset({"admin"})

CASES = [
    Case("POST", "/registerRuntime", runtime_post("/registerRuntime"), 200, DEPLOYERS),
    Case("POST", "/registerFunction/{runtime}/{funcName}", legacy_function_upload, 200, DEPLOYERS),
    Case("POST", "/invokeFunction", static("/invokeFunction", json={"funcName": "fn"}), 200, INVOKERS),
    Case("GET", "/runtimes", static("/runtimes"), 200, READERS),
    Case("GET", "/functions", static("/functions"), 200, READERS),
    Case("GET", "/calls", static("/calls"), 200, CALL_READERS),
    Case("GET", "/call/{callNum}", static("/call/1"), 200, CALL_READERS),
    Case("POST", "/v1/runtimes", runtime_post("/v1/runtimes"), 201, DEPLOYERS),
    Case("GET", "/v1/runtimes", static("/v1/runtimes"), 200, READERS),
    Case("GET", "/v1/runtimes/{name}", static("/v1/runtimes/rt"), 200, READERS),
    Case("DELETE", "/v1/runtimes/{name}", runtime_to_delete, 200, DEPLOYERS),
    Case("POST", "/v1/functions", v1_function_upload, 201, DEPLOYERS),
    Case("GET", "/v1/functions", static("/v1/functions"), 200, READERS),
    Case("GET", "/v1/functions/{name}", static("/v1/functions/fn"), 200, READERS),
    Case("DELETE", "/v1/functions/{name}", function_to_delete, 200, DEPLOYERS),
    Case("POST", "/v1/functions/{name}/invoke", static("/v1/functions/fn/invoke?async=true", json={}), 202, INVOKERS),
    Case("GET", "/v1/calls", static("/v1/calls"), 200, CALL_READERS),
    Case("GET", "/v1/calls/{key}", static("/v1/calls/id1"), 200, CALL_READERS),
    Case("GET", "/v1/calls/{id}/logs", static("/v1/calls/id1/logs"), 200, CALL_READERS),
    Case("POST", "/v1/calls/{id}/cancel", call_to_cancel, 202, INVOKERS),
    Case("GET", "/v1/calls/{id}/tree", static("/v1/calls/id1/tree"), 200, CALL_READERS),
    Case("POST", "/v1/sequences", sequence_post, 201, DEPLOYERS),
    Case("POST", "/v1/jobs", static("/v1/jobs", json=JOB), 201, DEPLOYERS),
    Case("GET", "/v1/jobs", static("/v1/jobs"), 200, READERS),
    Case("GET", "/v1/jobs/{id}", static("/v1/jobs/j1"), 200, READERS),
    Case("POST", "/v1/jobs/{id}/cancel", static("/v1/jobs/j1/cancel"), 202, DEPLOYERS),
    Case("GET", "/v1/jobs/{id}/logs", static("/v1/jobs/j1/logs"), 200, READERS),
    Case("GET", "/v1/nodes", static("/v1/nodes"), 200, READERS),
    Case("GET", "/metrics", static("/metrics"), 200, READERS),
    Case("GET", "/v1/stats", static("/v1/stats"), 200, CALL_READERS),
    Case("POST", "/v1/tokens", static("/v1/tokens", json={"role": "read"}), 201, ADMINS),
    Case("GET", "/v1/tokens", static("/v1/tokens"), 200, ADMINS),
    Case("DELETE", "/v1/tokens/{name}", token_to_revoke, 200, ADMINS),
]


def test_every_route_but_the_public_ones_has_a_case() -> None:
    served = {(method, path) for method, path, _, _ in ROUTES}
    assert served - {(c.method, c.route) for c in CASES} == {("GET", "/healthz"), ("GET", "/openapi.json")}


async def expect_error(r: aiohttp.ClientResponse, status: int, *fragments: str) -> str:
    body = await r.json()
    assert r.status == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    message: str = body["error"]["message"]
    for fragment in fragments:
        assert fragment in message, message
    return message


async def write_token(nc: Client, layout: Layout, role: Role, **record: Any) -> str:
    """A token put straight into the bucket (an expiry in the past cannot be asked for)."""
    issued = await Tokens(await nc.jetstream().key_value(layout.tokens_bucket)).create(
        f"direct{secrets.token_hex(3)}", role, **record
    )
    return issued.token


@pytest.fixture
async def env(nats_server: NatsServer, layout: Layout, nc: Client) -> AsyncIterator[Env]:
    state = StoreState(
        jobs={"j1": job_record("j1", JobStatus.QUEUED)},
        logs={k: LogPage(id=k, lines=[]) for k in ("id1", "j1")},
    )
    async with (
        fake_store(nc, layout, [call_record(1)]),
        fake_job_store(nc, layout, state),
        running_gateway(nats_server, layout, callbacks=False) as (gw, admin),
    ):
        e = Env(gw, admin)
        await register_runtime(admin, "rt")
        await register_function(admin, "fn", "rt")
        for role in ROLES:
            e.tokens[role] = await issue_token(admin, role, name=f"the-{role}")
        yield e


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_route_by_caller(env: Env, case: Case, nc: Client, layout: Layout) -> None:
    url = env.gw.url

    async def send(headers: dict[str, str]) -> aiohttp.ClientResponse:
        path, kw = await case.prepare(env)
        async with aiohttp.ClientSession(url) as http:
            r = await http.request(case.method, path, headers=headers, **kw)
            await r.read()
            return r

    r = await send({})
    await expect_error(r, 401, "Authorization")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    await expect_error(await send(bearer("faas_" + secrets.token_urlsafe(32))), 401, "invalid token")
    await expect_error(await send({"Authorization": "Basic YWRtaW46YWRtaW4="}), 401, "Bearer")

    expired = await write_token(nc, layout, Role.ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    async def expired_seen() -> bool:
        return (await send(bearer(expired))).status == 401

    await wait_until(expired_seen, what="the expired token in the gateway's copy")
    await expect_error(await send(bearer(expired)), 401, "expired")

    revoked = await issue_token(env.admin, "admin", name="revoked")
    async with env.admin.delete("/v1/tokens/revoked") as r:
        assert r.status == 200
    await expect_error(await send(bearer(revoked)), 401, "invalid token")

    for role in ROLES:
        r = await send(bearer(env.tokens[role]))
        if role in case.roles:
            assert r.status == case.ok, (role, r.status, await r.text())
        else:
            await expect_error(r, 403, f"role {role}", f"needs a {' or '.join(sorted(case.roles, key=ROLES.index))}")


async def test_a_job_s_logs_are_not_read_as_a_call_s(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    job_id = "j" + secrets.token_hex(16)
    state = StoreState(jobs={job_id: job_record(job_id)}, logs={job_id: LogPage(id=job_id, lines=[])})
    async with (
        fake_job_store(nc, layout, state),
        running_gateway(nats_server, layout, callbacks=False) as (gw, admin),
    ):
        invoker = bearer(await issue_token(admin, "invoke"))
        async with aiohttp.ClientSession(gw.url) as http:
            async with http.get(f"/v1/calls/{job_id}/logs", headers=invoker) as r:
                await expect_error(r, 404, "no call")
            async with http.get(f"/v1/jobs/{job_id}/logs", headers=invoker) as r:
                await expect_error(r, 403, "role invoke")
        async with admin.get(f"/v1/jobs/{job_id}/logs") as r:
            assert r.status == 200


async def test_healthz_needs_no_token(env: Env) -> None:
    async with aiohttp.ClientSession(env.gw.url) as http, http.get("/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}


async def test_openapi_needs_no_token(env: Env) -> None:
    async with aiohttp.ClientSession(env.gw.url) as http, http.get("/openapi.json") as r:
        assert r.status == 200
        spec = await r.json()
    assert spec["openapi"].startswith("3.") and "/v1/functions/{name}/invoke" in spec["paths"]


async def test_unknown_routes_need_a_token_before_they_are_404(env: Env) -> None:
    async with aiohttp.ClientSession(env.gw.url) as http, http.get("/nope") as r:
        await expect_error(r, 401)
    async with env.admin.get("/nope") as r:
        await expect_error(r, 404)
    async with aiohttp.ClientSession(env.gw.url, headers=bearer(env.tokens["read"])) as http:
        async with http.put("/v1/runtimes") as r:
            await expect_error(r, 405)


async def test_tokens_are_listed_without_secrets_and_names_are_unique(env: Env, nc: Client, layout: Layout) -> None:
    async with env.admin.post("/v1/tokens", json={"role": "invoke", "name": "ci", "expires_in_s": 3600}) as r:
        assert r.status == 201 and r.headers["Cache-Control"] == "no-store"
        created = await r.json()
    assert created["token"].startswith("faas_") and len(created["token"]) == 48
    assert set(created) == {"token", "name", "role", "created_at", "expires_at"}
    expires = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(created["created_at"])
    assert timedelta(seconds=3590) < expires <= timedelta(seconds=3600)

    async with env.admin.post("/v1/tokens", json={"role": "read", "name": "ci"}) as r:
        await expect_error(r, 409, "'ci' exists")
    async with env.admin.get("/v1/tokens") as r:
        listed = {t["name"]: t for t in await r.json()}
    assert listed["ci"] == {**{k: created[k] for k in ("name", "role", "created_at", "expires_at")}, "expired": False}
    assert {"admin", "the-read", "the-invoke", "the-deploy", "the-admin"} <= set(listed)
    assert not any("token" in t or created["token"] in str(t) for t in listed.values())

    # The bucket holds the SHA-256 of the token, never the token.
    kv = await nc.jetstream().key_value(layout.tokens_bucket)
    stored = await kv.get(token_digest(created["token"]))
    assert decode(TokenRecord, stored.value or b"").name == "ci"
    for key in await kv.keys():
        assert created["token"] not in key and created["token"].encode() not in ((await kv.get(key)).value or b"")

    async with env.admin.delete("/v1/tokens/ci") as r:
        assert r.status == 200 and await r.json() == {"revoked": "ci"}
    async with env.admin.delete("/v1/tokens/ci") as r:
        await expect_error(r, 404, "no token named 'ci'")
    async with env.admin.post("/v1/tokens", json={"role": "read", "name": "ci"}) as r:
        assert r.status == 201  # a revoked name is free again


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "role"),
        ({"role": "root"}, "role"),
        ({"role": "read", "name": "a.b"}, "name"),
        ({"role": "read", "expires_in_s": 0}, "expires_in_s"),
        ({"role": "read", "expires_in_s": 1, "expires_at": "2999-01-01T00:00:00Z"}, "not both"),
        ({"role": "read", "expires_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"role": "read", "secret": "x"}, "secret"),
    ],
)
async def test_bad_token_requests_are_400(env: Env, body: dict[str, Any], fragment: str) -> None:
    async with env.admin.post("/v1/tokens", json=body) as r:
        await expect_error(r, 400, fragment)


async def test_a_token_stops_working_when_it_expires(env: Env) -> None:
    token = await issue_token(env.admin, "read", name="short", expires_in_s=3)
    async with aiohttp.ClientSession(env.gw.url, headers=bearer(token)) as http:
        async with http.get("/v1/runtimes") as r:
            assert r.status == 200

        async def refused() -> bool:
            async with http.get("/v1/runtimes") as r:
                return r.status == 401

        await wait_until(refused, timeout=15, what="the token's expiry")
        async with http.get("/v1/runtimes") as r:
            await expect_error(r, 401, "'short' expired at")
    async with env.admin.get("/v1/tokens") as r:
        assert next(t for t in await r.json() if t["name"] == "short")["expired"] is True


async def test_a_revocation_reaches_another_gateway_within_two_seconds(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    async with (
        running_gateway(nats_server, layout, callbacks=False) as (_, admin_a),
        running_gateway(nats_server, layout, callbacks=False) as (gw_b, _),
        aiohttp.ClientSession(gw_b.url) as http_b,
    ):
        token = await issue_token(admin_a, "read", name="roaming")

        async def status_on_b() -> int:
            async with http_b.get("/v1/runtimes", headers=bearer(token)) as r:
                return r.status

        async def accepted() -> bool:
            return await status_on_b() == 200

        async def refused() -> bool:
            return await status_on_b() == 401

        await wait_until(accepted, timeout=2, what="gateway B taking a token made on A")
        async with admin_a.delete("/v1/tokens/roaming") as r:
            assert r.status == 200
        await wait_until(refused, timeout=2, what="gateway B refusing a token revoked on A")


async def test_the_admin_token_file_is_made_0600_and_reused(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    path = tmp_path / "data" / "admin.token"
    settings = settings_for(nats_server, layout, admin_token_file=path, callbacks=False)
    async with Gateway(settings) as gw:
        first = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["admin.token"]  # no temporary file left
        async with aiohttp.ClientSession(gw.url, headers=bearer(first)) as http, http.get("/v1/tokens") as r:
            assert r.status == 200
            assert [(t["name"], t["role"]) for t in await r.json()] == [("admin", "admin")]

    async with Gateway(settings):
        assert path.read_text().strip() == first  # valid: kept as it is

    kv = await nc.jetstream().key_value(layout.tokens_bucket)
    await Tokens(kv).revoke("admin")
    async with Gateway(settings) as gw:
        second = path.read_text().strip()
        assert second != first and stat.S_IMODE(path.stat().st_mode) == 0o600
        async with aiohttp.ClientSession(gw.url) as http:
            async with http.get("/v1/tokens", headers=bearer(first)) as r:
                assert r.status == 401
            async with http.get("/v1/tokens", headers=bearer(second)) as r:
                assert [t["name"] for t in await r.json()] == ["admin"]

    path.unlink()  # the file is gone, its token is not: a second admin token, admin-2
    async with Gateway(settings) as gw:
        third = path.read_text().strip()
        async with aiohttp.ClientSession(gw.url, headers=bearer(third)) as http, http.get("/v1/tokens") as r:
            assert sorted(t["name"] for t in await r.json()) == ["admin", "admin-2"]


async def test_a_non_admin_token_in_the_file_is_replaced(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    path = tmp_path / "admin.token"
    path.write_text(await write_token(nc, layout, Role.READ))
    async with Gateway(settings_for(nats_server, layout, admin_token_file=path, callbacks=False)) as gw:
        async with aiohttp.ClientSession(gw.url, headers=bearer(path.read_text().strip())) as http:
            async with http.get("/v1/tokens") as r:
                assert r.status == 200
