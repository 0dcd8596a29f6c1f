"""The largest params and result the limits allow, and an error longer than any event: each
call ends in one attempt, and the caller sees the whole result or the cut error."""

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from faas_cli.up import Platform
from tests.e2e.natsproto import RawNats
from tests.e2e.platform_harness import poll_json, running_platform, session
from tests.functions import HANDLER_RUNTIME_CMD, zip_bytes

pytestmark = pytest.mark.e2e

KiB = 1024
RESULT_MAX = 768 * KiB  # Limits.result_bytes' bound
PARAMS_MAX = 256 * KiB  # the gateway's default max_params_bytes

JSON = {"Content-Type": "application/json"}
RUNTIME = {
    "name": "pybig",
    "image": "faas-python",
    "path": "/app",
    "run": "python3 main.py",
    "handler_command": HANDLER_RUNTIME_CMD["python"],
}
BIG = {
    # A result of exactly ``n`` bytes as JSON (a string: its quotes included).
    "main.py": (
        "import json, sys\nparams = json.load(sys.stdin)\nsys.stdout.write(json.dumps('r' * (params['n'] - 2)))\n"
    ),
    "handler.py": "def handler(params):\n    raise ValueError('e' * params['n'])\n",
}


@pytest.fixture
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path_factory.mktemp("large"), policy="none") as p:
        yield p


async def _register(http: aiohttp.ClientSession, name: str, handler: str | None = None) -> None:
    form = aiohttp.FormData()
    form.add_field("name", name)
    form.add_field("runtime", RUNTIME["name"])
    form.add_field("limits", json.dumps({"result_bytes": RESULT_MAX, "params_bytes": PARAMS_MAX}))
    if handler:
        form.add_field("handler", handler)
    form.add_field("module", zip_bytes(BIG), filename="big.zip")
    async with http.post("/v1/functions", data=form) as resp:
        assert resp.status == 201, await resp.text()


async def test_largest_params_and_result_are_done_in_one_attempt(platform: Platform) -> None:
    async with session(platform) as http:
        async with http.post("/v1/runtimes", json=RUNTIME) as resp:
            assert resp.status == 201, await resp.text()
        await _register(http, "big")
        await _register(http, "longerror", handler="handler:handler")

        # Params of exactly the gateway's limit beside a result of exactly its own: together
        # more than one NATS message.
        params = {"n": RESULT_MAX, "pad": ""}
        params["pad"] = "x" * (PARAMS_MAX - len(json.dumps(params, separators=(",", ":"))))
        body = json.dumps(params, separators=(",", ":"))
        assert len(body) == PARAMS_MAX
        async with http.post("/v1/functions/big/invoke", data=body, headers=JSON) as resp:
            assert resp.status == 200, await resp.text()
            call = await resp.json()
        assert call["status"] == "DONE" and call["attempts"] == 1, {k: v for k, v in call.items() if k != "result"}
        assert call["result"] == "r" * (RESULT_MAX - 2)
        assert call["params"] == params  # the gateway's accepted event carries them

        # The same over NATS (nats req faas.call.big): the reply leaves out the params the
        # caller sent, which do not fit beside the result in one message.
        password = (platform.data / "nats-users" / "invoker.password").read_text().strip()
        raw = await RawNats.connect(platform.nats.host, platform.nats.port, "invoker", password)
        try:
            reply = (await raw.req("faas.call.big", body.encode())).json()
        finally:
            await raw.close()
        assert reply["status"] == "DONE" and reply["attempts"] == 1 and reply["params"] is None
        assert reply["result"] == call["result"]

        # A handler's error message of 2 MiB: cut, with its size, in one attempt.
        async with http.post("/v1/functions/longerror/invoke", json={"n": 2 << 20}) as resp:
            failed = await resp.json()
        assert failed["status"] == "ERROR" and failed["attempts"] == 1, failed["error"]["message"][-200:]
        assert failed["error"]["type"] == "ValueError"
        assert "more bytes cut]" in failed["error"]["message"][-100:]
        assert len(failed["error"]["message"]) < 64 * KiB

        # The record says the same (the error one: the large one's reply is over a NATS reply).
        stored = await poll_json(
            http, f"/v1/calls/{failed['id']}", lambda s, b: s == 200 and b.get("status") == "ERROR"
        )
        assert stored["attempts"] == 1 and stored["error"] == failed["error"]
