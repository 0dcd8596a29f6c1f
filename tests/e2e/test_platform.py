"""The whole platform, as `faas up` runs it: real nats-server, store, gateway and node agent
processes, real containers. The README's dice example, over both route sets and over NATS."""

import asyncio
import json
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from faas_cli.up import Platform
from tests.e2e.natsproto import RawNats
from tests.e2e.platform_harness import base_url, poll_json, running_platform, session
from tests.functions import DICE, PY_HANDLER, SLEEPY, targz_bytes, zip_bytes

pytestmark = pytest.mark.e2e

PY_RUNTIME = {
    "name": "pythonruntime",
    "image": "faas-python",
    "path": "/app",
    "dependencies": "pip install -r requirements.txt",
    "run": "python3 test.py",
}


@pytest.fixture(scope="module")
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path_factory.mktemp("platform")) as p:
        yield p


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with session(platform) as http:
        yield http


async def _upload(http: aiohttp.ClientSession, runtime: str, name: str, archive: bytes, filename: str) -> int:
    form = aiohttp.FormData()
    form.add_field("module", archive, filename=filename, content_type="application/gzip")
    async with http.post(f"/registerFunction/{runtime}/{name}", data=form) as resp:
        assert resp.status == 200, await resp.text()
        return resp.status


def _rolls(result: str) -> list[int]:
    rolls = json.loads(result)
    assert isinstance(rolls, list) and len(rolls) == 4 and all(1 <= r <= 6 for r in rolls), result
    return rolls


async def test_dice_through_the_original_routes(http: aiohttp.ClientSession) -> None:
    await _dice_through_the_original_routes(http)


async def test_no_auth_serves_the_original_routes_without_a_header(docker_ready: None, tmp_path: Path) -> None:
    """`faas up --no-auth`: the seed's curl examples as they were, with no token."""
    async with running_platform(tmp_path / "data", auth=False) as p, session(p) as http:
        assert "Authorization" not in http.headers and not p.admin_token_path.exists()
        await _dice_through_the_original_routes(http)


async def test_without_the_token_only_healthz_answers(platform: Platform) -> None:
    async with aiohttp.ClientSession(base_url(platform)) as anonymous:
        async with anonymous.get("/healthz") as resp:
            assert resp.status == 200
        for method, path in (("GET", "/runtimes"), ("GET", "/v1/calls"), ("POST", "/invokeFunction")):
            async with anonymous.request(method, path, json={}) as resp:
                assert resp.status == 401, (method, path)
                assert (await resp.json())["error"]["code"] == "unauthorized"


async def _dice_through_the_original_routes(http: aiohttp.ClientSession) -> None:
    async with http.post("/registerRuntime", json=PY_RUNTIME) as resp:
        assert resp.status == 200, await resp.text()
    await _upload(http, "pythonruntime", "dice", targz_bytes(DICE), "dice.tar.gz")
    async with http.get("/runtimes") as resp:
        assert "pythonruntime" in await resp.json()
    async with http.get("/functions") as resp:
        assert "dice" in await resp.json()

    async with http.post("/invokeFunction", json={"funcName": "dice", "params": {"roll": "4d6"}}) as resp:
        assert resp.status == 200, await resp.text()
        num = (await resp.json())["callNum"]

    call = await poll_json(http, f"/call/{num}", lambda s, b: s == 200 and b["status"] == "DONE")
    assert call["funcName"] == "dice" and call["params"] == {"roll": "4d6"} and call["callNum"] == num
    _rolls(call["result"])
    assert "," in call["result"] and " " not in call["result"]  # "[4,6,4,3]"
    calls = await poll_json(http, "/calls", lambda s, b: f"c{num}" in b)
    assert calls[f"c{num}"]["status"] == "DONE"


async def test_a_call_is_pending_before_it_is_done(http: aiohttp.ClientSession) -> None:
    slow = {**SLEEPY, "main.py": "import time\ntime.sleep(3)\nprint('[1]')\n"}
    async with http.post("/registerRuntime", json={**PY_RUNTIME, "name": "pyslow", "run": "python3 main.py"}):
        pass
    await _upload(http, "pyslow", "slowpoke", zip_bytes(slow), "slow.zip")
    async with http.post("/invokeFunction", json={"funcName": "slowpoke", "params": {}}) as resp:
        num = (await resp.json())["callNum"]
    first = await poll_json(http, "/calls", lambda s, b: f"c{num}" in b)
    assert first[f"c{num}"] == {
        "funcName": "slowpoke",
        "params": {},
        "callNum": num,
        "status": "PENDING",
        "result": "",
    }
    done = await poll_json(http, f"/call/{num}", lambda s, b: b.get("status") == "DONE")
    assert done["result"] == "[1]"


async def test_dice_through_v1_sync_and_async(http: aiohttp.ClientSession) -> None:
    spec = {**PY_RUNTIME, "name": "py"}
    async with http.post("/v1/runtimes", json=spec) as resp:
        assert resp.status == 201, await resp.text()
    form = aiohttp.FormData()
    form.add_field("name", "dice2")
    form.add_field("runtime", "py")
    form.add_field("module", zip_bytes(DICE), filename="dice.zip")
    async with http.post("/v1/functions", data=form) as resp:
        assert resp.status == 201, await resp.text()
        record = await resp.json()
        assert record["version"] == 1 and record["digest"].startswith("sha256:")

    async with http.post("/v1/functions/dice2/invoke", json={"roll": "4d6"}) as resp:
        assert resp.status == 200, await resp.text()
        call = await resp.json()
    assert call["status"] == "DONE"
    assert len(call["result"]) == 4
    stored = await poll_json(http, f"/v1/calls/{call['id']}", lambda s, b: s == 200 and b["status"] == "DONE")
    assert stored["result"] == call["result"] and stored["number"] == call["number"]
    assert stored["function"] == "dice2" and stored["version"] == 1 and stored["attempts"] == 1
    assert stored["node"] and stored["started_at"] and stored["finished_at"] and stored["exit_code"] == 0

    async with http.post("/v1/functions/dice2/invoke?async=true", json={"roll": "2d6"}) as resp:
        assert resp.status == 202, await resp.text()
        accepted = await resp.json()
    done = await poll_json(http, f"/v1/calls/{accepted['number']}", lambda s, b: b.get("status") == "DONE")
    assert len(done["result"]) == 2 and done["id"] == accepted["id"]


async def test_calls_published_and_requested_over_raw_nats(platform: Platform, http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/runtimes", json={**PY_RUNTIME, "name": "pyraw"}):
        pass
    await _upload(http, "pyraw", "rawdice", zip_bytes(DICE), "dice.zip")
    # As the user for `nats pub` / `nats req`, with the password faas up wrote for it.
    password = (platform.data / "nats-users" / "invoker.password").read_text().strip()
    raw = await RawNats.connect(platform.nats.host, platform.nats.port, "invoker", password)
    try:
        # nats pub faas.invoke.rt.pyraw '{"function":"rawdice","params":{"roll":"4d6"}}'
        await raw.pub("faas.invoke.rt.pyraw", b'{"function":"rawdice","params":{"roll":"4d6"}}')
        page = await poll_json(
            http,
            "/v1/calls?function=rawdice",
            lambda s, b: s == 200 and any(c["status"] == "DONE" for c in b["items"]),
        )
        assert len(page["items"][0]["result"]) == 4

        # nats req faas.call.rawdice '{"roll":"3d6"}'
        reply = await raw.req("faas.call.rawdice", b'{"roll":"3d6"}')
        call = reply.json()
        assert call["status"] == "DONE" and len(call["result"]) == 3, reply
        assert f"Faas-Call-Id: {call['id']}" in reply.headers

        # nats req faas.call.nosuchfn '{}' -> an error reply, not silence
        err = await raw.req("faas.call.nosuchfn", b"{}")
        assert "Nats-Service-Error-Code: 404" in err.headers, err
        assert b"nosuchfn" in err.data or "nosuchfn" in err.headers
    finally:
        await raw.close()


async def test_nats_takes_only_its_users_and_their_passwords_are_private(platform: Platform) -> None:
    users = platform.data / "nats-users"
    assert stat.S_IMODE(users.stat().st_mode) == 0o700
    for user in ("gateway", "agent", "store", "invoker", "admin"):
        assert stat.S_IMODE((users / f"{user}.password").stat().st_mode) == 0o600
    config = platform.nats.config_file.read_text()
    assert stat.S_IMODE(platform.nats.config_file.stat().st_mode) == 0o600
    for user in ("gateway", "agent", "store", "invoker", "admin"):
        # the server holds a hash, never the password
        assert (users / f"{user}.password").read_text().strip() not in config
    with pytest.raises(AssertionError, match="Authorization Violation"):
        await RawNats.connect(platform.nats.host, platform.nats.port)
    with pytest.raises(AssertionError, match="Authorization Violation"):
        await RawNats.connect(platform.nats.host, platform.nats.port, "invoker", "guess")
    # monitoring answers on loopback only
    assert '"http": "127.0.0.1:' in config


async def test_restart_keeps_runtimes_functions_and_calls(docker_ready: None, tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_platform(data) as p, session(p) as http:
        async with http.post("/registerRuntime", json=PY_RUNTIME) as resp:
            assert resp.status == 200
        await _upload(http, "pythonruntime", "dice", targz_bytes(DICE), "dice.tar.gz")
        async with http.post("/v1/functions/dice/invoke", json={"roll": "4d6"}) as resp:
            call = await resp.json()
        await poll_json(http, f"/v1/calls/{call['id']}", lambda s, b: s == 200 and b["status"] == "DONE")

    async with running_platform(data) as p, session(p) as http:
        async with http.get("/runtimes") as resp:
            assert await resp.json() == ["pythonruntime"]
        async with http.get("/functions") as resp:
            assert await resp.json() == ["dice"]
        async with http.get(f"/v1/calls/{call['id']}") as resp:
            assert resp.status == 200 and (await resp.json())["result"] == call["result"]
        async with http.post("/v1/functions/dice/invoke", json={"roll": "1d6"}) as resp:
            again = await resp.json()
        assert again["status"] == "DONE" and again["number"] > call["number"]


async def _faas(platform: Platform, *args: str) -> tuple[int, Any]:
    """The `faas` command, as a user runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "faas_cli",
        "--gateway",
        base_url(platform),
        # the CLI finds the admin token `faas up` wrote there by itself
        "--data-dir",
        str(platform.data),
        "-o",
        "json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode() or err.decode()
    try:
        return proc.returncode or 0, json.loads(text)
    except json.JSONDecodeError:
        return proc.returncode or 0, text


async def test_cli_register_deploy_invoke(platform: Platform, tmp_path: Path) -> None:
    code, spec = await _faas(
        platform,
        "runtime",
        "register",
        "--name",
        "clipy",
        "--image",
        "faas-python",
        "--run",
        "python3 main.py",
        "--handler-command",
        "python3 /opt/faas/faas_bootstrap.py",
    )
    assert code == 0 and spec["name"] == "clipy", spec
    src = tmp_path / "fn"
    src.mkdir()
    for name, text in PY_HANDLER.items():
        (src / name).write_text(text)
    code, rec = await _faas(
        platform,
        "function",
        "deploy",
        "clifn",
        str(src),
        "--runtime",
        "clipy",
        "--handler",
        "main:handler",
        "--timeout",
        "10",
    )
    assert code == 0 and rec["version"] == 1 and rec["limits"]["timeout_s"] == 10, rec
    code, call = await _faas(platform, "invoke", "clifn", '{"x": "cli"}')
    assert code == 0 and call["status"] == "DONE" and call["result"]["echo"] == {"x": "cli"}, call
    code, failed = await _faas(platform, "invoke", "clifn", '{"fail": "oops"}')
    assert code == 1 and failed["error"]["type"] == "ValueError"
    code, shown = await _faas(platform, "call", str(call["number"]))
    assert code == 0 and shown["id"] == call["id"]
    code, msg = await _faas(platform, "invoke", "nosuch", "{}")
    assert code == 3 and "404" in msg  # exit 3: not found (faas_cli/exits.py)
