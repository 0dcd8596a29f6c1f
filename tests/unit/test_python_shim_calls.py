"""The Python shim's nested calls (faas.call / acall / spawn) over its stdio protocol, run
here as a process with this interpreter; the test plays the agent."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BOOTSTRAP = Path(__file__).parents[2] / "runtimes" / "python" / "bootstrap" / "faas_bootstrap.py"

HANDLERS = """
import asyncio
import faas

def twice(params):
    return faas.call("double", params["x"]) + faas.call("double", params["y"])

def caught(params):
    try:
        faas.call("boom", None)
    except faas.CallError as err:
        return [type(err).__name__, err.type, err.message, err.call_id, isinstance(err, faas.CallError)]

def passes_on(params):
    faas.call("boom", None)

async def fan(params):
    return sum(await asyncio.gather(*(faas.acall("one", i) for i in range(params))))

def later(params):
    return faas.spawn("notify", params)
"""


class Shim:
    """A shim process serving ``handler`` of ``files`` (written to ``tmp``) on stdio."""

    def __init__(self, argv: list[str], tmp: Path, files: dict[str, str], handler: str) -> None:
        for name, text in files.items():
            (tmp / name).write_text(text)
        env = {"FAAS_PATH": str(tmp), "FAAS_HANDLER": handler, "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.read() == {"kind": "ready"}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            assert stream is not None
            stream.close()

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj).encode() + b"\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            assert line, "the shim exited"
            message: dict[str, Any] = json.loads(line)
            if message.get("kind") != "log":
                return message


@pytest.fixture
def shim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Shim]:
    s = Shim([sys.executable, str(BOOTSTRAP)], tmp_path, {"main.py": HANDLERS}, f"main:{request.param}")
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
def test_a_failed_child_raises_its_error_type(shim: Shim) -> None:
    shim.send({"id": "c1", "params": None})
    ask = shim.read()
    error = {"type": "ZeroDivisionError", "message": "division by zero"}
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": False, "id": "k1", "error": error})
    assert shim.read()["result"] == ["ZeroDivisionError", "ZeroDivisionError", "division by zero", "k1", True]


@pytest.mark.parametrize("shim", ["passes_on"], indirect=True)
def test_an_uncaught_child_error_keeps_its_type_up_the_tree(shim: Shim) -> None:
    shim.send({"id": "c1", "params": None})
    ask = shim.read()
    error = {"type": "CallDepthExceeded", "message": "33 deep"}
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": False, "error": error})
    reply = shim.read()
    assert reply["ok"] is False and reply["error"]["type"] == "CallDepthExceeded"
    assert reply["error"]["message"] == "33 deep"


@pytest.mark.parametrize("shim", ["fan"], indirect=True)
def test_acall_fans_out_and_gathers(shim: Shim) -> None:
    shim.send({"id": "c1", "params": 20})
    asks = [shim.read() for _ in range(20)]
    assert sorted(a["params"] for a in asks) == list(range(20))
    for ask in reversed(asks):  # answers in any order
        shim.send({"kind": "call_result", "ref": ask["ref"], "ok": True, "result": ask["params"]})
    assert shim.read()["result"] == sum(range(20))


@pytest.mark.parametrize("shim", ["later"], indirect=True)
def test_spawn_returns_the_child_call_id(shim: Shim) -> None:
    shim.send({"id": "c1", "params": {"to": "x"}})
    ask = shim.read()
    assert ask["wait"] is False and ask["function"] == "notify"
    shim.send({"kind": "call_result", "ref": ask["ref"], "ok": True, "id": "child-1"})
    assert shim.read()["result"] == "child-1"
