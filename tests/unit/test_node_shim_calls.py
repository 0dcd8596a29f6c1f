"""The Node.js shim's nested calls (``await faas.call`` / ``faas.spawn``) over its stdio
protocol, run here with the host's node (skipped without one); the test plays the agent."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_python_shim_calls import Shim

BOOTSTRAP = Path(__file__).parents[2] / "runtimes" / "node" / "bootstrap" / "faas_bootstrap.js"
NODE = shutil.which("node")

HANDLERS = """
const faas = require("faas");
exports.twice = async (p) => (await faas.call("double", p.x)) + (await faas.call("double", p.y));
exports.fan = async (n) =>
  (await Promise.all([...Array(n).keys()].map((i) => faas.call("one", i)))).reduce((a, b) => a + b, 0);
exports.caught = async () => {
  try { await faas.call("boom", null); }
  catch (e) { return [e.name, e.type, e.message, e.callId, e instanceof faas.CallError]; }
};
exports.passes_on = async () => faas.call("boom", null);
exports.later = async (p) => faas.spawn("notify", p);
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="no node on this host")


@pytest.fixture
def shim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Shim]:
    assert NODE is not None
    s = Shim([NODE, str(BOOTSTRAP)], tmp_path, {"index.js": HANDLERS}, f"index:{request.param}")
    yield s
    s.close()


@pytest.mark.parametrize("shim", ["twice"], indirect=True)
def test_call_waits_for_each_answer_in_turn(shim: Shim) -> None:
    shim.send({"id": "c1", "params": {"x": 2, "y": 5}})
    for n in (2, 5):
        ask = shim.read()
        assert ask == {"kind": "call", "ref": ask["ref"], "function": "double", "params": n, "wait": True}
        shim.send({"kind": "call_result", "ref": 999, "ok": True, "result": -1})  # not one of ours: dropped
        shim.send({"kind": "call_result", "ref": ask["ref"], "ok": True, "id": f"k{n}", "result": 2 * n})
    assert shim.read() == {"id": "c1", "ok": True, "result": 14, "logs": ""}


@pytest.mark.parametrize("shim", ["caught"], indirect=True)
def test_a_failed_child_rejects_with_its_error_type(shim: Shim) -> None:
    shim.send({"id": "c1", "params": None})
    ask = shim.read()
    error = {"type": "RangeError", "message": "nope"}
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": False, "id": "k1", "error": error})
    assert shim.read()["result"] == ["RangeError", "RangeError", "nope", "k1", True]


@pytest.mark.parametrize("shim", ["passes_on"], indirect=True)
def test_an_uncaught_child_error_keeps_its_type_up_the_tree(shim: Shim) -> None:
    shim.send({"id": "c1", "params": None})
    ask = shim.read()
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": False, "error": {"type": "Timeout", "message": "30s"}})
    reply = shim.read()
    assert reply["ok"] is False and reply["error"]["type"] == "Timeout" and reply["error"]["message"] == "30s"


@pytest.mark.parametrize("shim", ["fan"], indirect=True)
def test_promise_all_fans_out_and_gathers(shim: Shim) -> None:
    shim.send({"id": "c1", "params": 20})
    asks = [shim.read() for _ in range(20)]
    for ask in reversed(asks):
        shim.send({"kind": "call_result", "ref": ask["ref"], "ok": True, "result": ask["params"]})
    assert shim.read()["result"] == sum(range(20))


@pytest.mark.parametrize("shim", ["later"], indirect=True)
def test_spawn_resolves_to_the_child_call_id(shim: Shim) -> None:
    shim.send({"id": "c1", "params": {"to": "x"}})
    ask = shim.read()
    assert ask["wait"] is False
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": True, "id": "child-1"})
    assert shim.read()["result"] == "child-1"
