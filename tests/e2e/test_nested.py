"""Nested calls and sequences on the whole platform (`faas up`: real nats-server, store,
gateway and one node agent with 4 slots, real containers).

The runtime images must have the shims of this tree: ``scripts/build-images.sh`` rebuilds
them when runtimes/ changed. FAAS_E2E_PYTHON_IMAGE / FAAS_E2E_NODE_IMAGE name other images
(a developer's build of a branch's shims)."""

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from faas_cli.up import Platform
from tests.e2e.platform_harness import poll_json, running_platform, session
from tests.functions import HANDLER_RUNTIME_CMD, zip_bytes

pytestmark = pytest.mark.e2e

PYTHON_IMAGE = os.environ.get("FAAS_E2E_PYTHON_IMAGE", "faas-python")
NODE_IMAGE = os.environ.get("FAAS_E2E_NODE_IMAGE", "faas-node")
SLOTS = 4
MAX_DEPTH = 12  # fib(12) is 11 calls deep
MAX_TREE_CALLS = 500

FIB = """
import faas
def handler(n):
    return n if n < 2 else faas.call("fib", n - 1) + faas.call("fib", n - 2)
"""
FAN = """
import asyncio, faas
async def handler(p):
    return sum(await asyncio.gather(*(faas.acall("leaf", i) for i in range(p["n"]))))
"""
LEAF = "def handler(i):\n    return i * 2\n"
ADD1 = "def handler(x):\n    return x + 1\n"
RUNAWAY = """
import faas
def handler(n):
    return faas.call("runaway", n + 1)
"""
BOMB = """
import faas
def handler(n):
    return [faas.spawn("bomb", n + 1), faas.spawn("bomb", n + 1)]
"""
NODE_FIB = """
const faas = require("faas");
exports.handler = async (n) => (n < 2 ? n : (await faas.call("nfib", n - 1)) + (await faas.call("nfib", n - 2)));
"""
NODE_FAN = """
const faas = require("faas");
exports.handler = async (n) =>
  (await Promise.all([...Array(n).keys()].map((i) => faas.call("leaf", i)))).reduce((a, b) => a + b, 0);
"""
# A parent waiting on a child that sleeps: cancelling the parent cancels the child.
WAITER = """
import faas
def handler(p):
    return faas.call("sleeper", p)
"""
SLEEPER = "import time\ndef handler(p):\n    time.sleep(600)\n"
SNEAKY = """
import faas
def handler(p):
    return faas.call("leaf", 1)
"""


@pytest.fixture(scope="module")
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    env = {
        "FAAS_AGENT_MAX_DEPTH": str(MAX_DEPTH),
        "FAAS_AGENT_MAX_TREE_CALLS": str(MAX_TREE_CALLS),
        # a chain of MAX_DEPTH waiting calls holds that many containers of one function
        "FAAS_AGENT_POOL_MAX": "24",
        "FAAS_AGENT_MAX_WARM": "32",
    }
    async with running_platform(tmp_path_factory.mktemp("nested"), slots=SLOTS, extra_env=env) as p:
        async with session(p) as http:
            await register_runtime(http, "py", PYTHON_IMAGE, "python")
            for name, code, calls in (
                ("fib", FIB, "fib"),
                ("fan", FAN, "leaf"),
                ("leaf", LEAF, ""),
                ("add1", ADD1, ""),
                ("runaway", RUNAWAY, "runaway"),
                ("bomb", BOMB, "bomb"),
                ("sneaky", SNEAKY, ""),
                ("waiter", WAITER, "sleeper"),
                ("sleeper", SLEEPER, ""),
            ):
                await register(http, name, "py", {"main.py": code}, calls, timeout_s=120)
            await register_runtime(http, "js", NODE_IMAGE, "node")
            for name, code, calls in (("nfib", NODE_FIB, "nfib"), ("nfan", NODE_FAN, "leaf")):
                await register(http, name, "js", {"index.js": code}, calls, timeout_s=120, handler="index:handler")
        yield p


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[aiohttp.ClientSession]:
    async with session(platform) as http:
        yield http


async def register_runtime(http: aiohttp.ClientSession, name: str, image: str, kind: str) -> None:
    spec = {"name": name, "image": image, "path": "/app", "run": "true", "handler_command": HANDLER_RUNTIME_CMD[kind]}
    async with http.post("/v1/runtimes", json=spec) as resp:
        assert resp.status == 201, await resp.text()


async def register(
    http: aiohttp.ClientSession,
    name: str,
    runtime: str,
    files: dict[str, str],
    calls: str,
    timeout_s: float = 30,
    handler: str = "main:handler",
) -> None:
    form = aiohttp.FormData()
    form.add_field("name", name)
    form.add_field("runtime", runtime)
    form.add_field("handler", handler)
    form.add_field("calls", calls)
    form.add_field("limits", f'{{"timeout_s": {timeout_s}}}')
    form.add_field("module", zip_bytes(files), filename="fn.zip", content_type="application/zip")
    async with http.post("/v1/functions", data=form) as resp:
        assert resp.status == 201, await resp.text()


async def invoke(http: aiohttp.ClientSession, name: str, params: Any, wait: float = 120) -> dict[str, Any]:
    async with http.post(f"/v1/functions/{name}/invoke?wait={wait}", json=params) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def tree(http: aiohttp.ClientSession, call_id: str, calls: int) -> dict[str, Any]:
    """The call's tree once the store has ``calls`` calls of it, all ended."""

    def complete(status: int, body: Any) -> bool:
        return status == 200 and count(body) >= calls and all_ended(body)

    body: dict[str, Any] = await poll_json(http, f"/v1/calls/{call_id}/tree", complete, timeout=60)
    return body


def count(node: dict[str, Any]) -> int:
    return 1 + sum(count(c) for c in node["children"])


def all_ended(node: dict[str, Any]) -> bool:
    return node["status"] not in ("QUEUED", "RUNNING") and all(all_ended(c) for c in node["children"])


def depth(node: dict[str, Any]) -> int:
    return 1 + max((depth(c) for c in node["children"]), default=0)


async def node_healthy(http: aiohttp.ClientSession) -> None:
    """A plain call still runs, and the node has every slot free again."""
    assert (await invoke(http, "leaf", 21))["result"] == 42

    def all_free(status: int, body: Any) -> bool:
        return status == 200 and len(body) == 1 and body[0]["free"] == SLOTS

    await poll_json(http, "/v1/nodes", all_free, timeout=30)


async def test_fib_12_through_nested_calls(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "fib", 12)
    assert record["status"] == "DONE" and record["result"] == 144, record
    assert record["parent"] is None and record["root"] is None
    root = await tree(http, record["id"], 465)  # fib(12) makes 464 nested calls
    assert count(root) == 465 and depth(root) == 12
    assert root["function"] == "fib" and all(c["status"] == "DONE" for c in root["children"])
    child = root["children"][0]
    async with http.get(f"/v1/calls/{child['id']}") as resp:
        assert (await resp.json())["parent"] == record["id"]


async def test_a_fan_out_of_200_is_gathered(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "fan", {"n": 200})
    assert record["status"] == "DONE" and record["result"] == 2 * sum(range(200)), record
    root = await tree(http, record["id"], 201)
    assert len(root["children"]) == 200 and {c["function"] for c in root["children"]} == {"leaf"}


async def test_the_depth_limit_ends_a_runaway_recursion(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "runaway", 0)
    assert record["status"] == "ERROR" and record["error"]["type"] == "CallDepthExceeded", record
    assert f"over the maximum of {MAX_DEPTH}" in record["error"]["message"]
    root = await tree(http, record["id"], MAX_DEPTH + 1)  # the root is at depth 0
    assert depth(root) == MAX_DEPTH + 1
    await node_healthy(http)


async def test_the_tree_size_limit_ends_a_call_bomb(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "bomb", 0)
    assert record["status"] == "DONE"
    root = await tree(http, record["id"], MAX_TREE_CALLS + 1)
    assert count(root) == MAX_TREE_CALLS + 1

    def refused(node: dict[str, Any]) -> int:
        here = (node.get("error") or {}).get("type") == "CallTreeTooLarge"
        return int(here) + sum(refused(c) for c in node["children"])

    assert refused(root) > 0
    await node_healthy(http)


async def test_a_call_outside_the_allow_list_is_refused(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "sneaky", {})
    assert record["status"] == "ERROR" and record["error"]["type"] == "CallNotAllowed", record
    assert "may not call 'leaf'" in record["error"]["message"]


async def test_a_sequence_of_three_functions(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/sequences", json={"name": "pipeline", "steps": ["add1", "leaf", "add1"]}) as resp:
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["sequence"] == ["add1", "leaf", "add1"]
    record = await invoke(http, "pipeline", 4)
    assert record["status"] == "DONE" and record["result"] == (4 + 1) * 2 + 1, record
    assert record["served"] is None  # no container of its own
    root = await tree(http, record["id"], 4)
    assert [c["function"] for c in root["children"]] == ["add1", "leaf", "add1"]


async def test_node_fib_and_a_fan_out_to_python(http: aiohttp.ClientSession) -> None:
    record = await invoke(http, "nfib", 10)
    assert record["status"] == "DONE" and record["result"] == 55, record
    root = await tree(http, record["id"], 177)  # fib(10) makes 176 nested calls
    assert count(root) == 177 and depth(root) == 10
    record = await invoke(http, "nfan", 50)
    assert record["status"] == "DONE" and record["result"] == 2 * sum(range(50)), record
    root = await tree(http, record["id"], 51)
    assert {c["function"] for c in root["children"]} == {"leaf"}


async def test_cancelling_a_call_cancels_the_child_it_waits_for(http: aiohttp.ClientSession) -> None:
    async with http.post("/v1/functions/waiter/invoke?async=true", json={}) as resp:
        assert resp.status == 202, await resp.text()
        parent = (await resp.json())["id"]

    def child_running(status: int, body: Any) -> bool:
        return status == 200 and bool(body["children"]) and body["children"][0]["status"] == "RUNNING"

    started = await poll_json(http, f"/v1/calls/{parent}/tree", child_running, timeout=60)
    child = started["children"][0]["id"]
    async with http.post(f"/v1/calls/{parent}/cancel") as resp:
        assert resp.status == 202, await resp.text()
    done = await tree(http, parent, 2)
    assert done["status"] == "CANCELLED"
    assert [(c["id"], c["status"]) for c in done["children"]] == [(child, "CANCELLED")]
    await node_healthy(http)
