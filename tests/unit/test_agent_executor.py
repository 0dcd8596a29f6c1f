"""The executor under policy ``none`` (a new container per call) against the fake Docker engine:
the agent's real call code (scripts, tar, attach stream, both protocols, teardown) with
functions written in Python (tests/fakes/runtime.py)."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from nats.js.object_store import ObjectStore

from node_agent.calls.executor import Executor
from node_agent.containers.artifacts import ArtifactCache
from node_agent.containers.deps import DependenciesFailed, DependencyImages, deps_image_name
from node_agent.logstream import INSTALL
from node_agent.outcome import Outcome
from node_agent.wire.stdio import STDERR, STDOUT
from schemas import CallStatus, FunctionRecord, Invocation, Limits, encode_json
from tests.fakes.container import PIPE_BYTES, Exit, Process, Program
from tests.fakes.docker import FakeEngine
from tests.fakes.objects import FakeObjectStore
from tests.fakes.runtime import Handler, HandlerCall, function_image
from tests.functions import PYTHON_IMAGE, handler_runtime, zip_bytes

RUNTIME = handler_runtime("python")  # image faas-python, code at /app, a handler shim
CODE = {"main.py": "def handler(params):\n    return params\n", "requirements.txt": "left-pad\n"}
NODE = "node-1"
CALL_USER = (10001, 10002)


@dataclass
class Node:
    engine: FakeEngine
    store: FakeObjectStore
    deps: DependencyImages
    executor: Executor
    logs: list[tuple[int, bytes]] = field(default_factory=list)

    def function(
        self, handler: str | None = None, has_dependencies: bool = False, name: str = "dice", **limits: Any
    ) -> FunctionRecord:
        archive = zip_bytes(CODE)
        return FunctionRecord(
            name=name,
            runtime=RUNTIME.name,
            version=1,
            digest=self.store.put(archive),
            size=len(archive),
            archive="zip",
            limits=Limits(**limits),
            handler=handler,
            has_dependencies=has_dependencies,
        )

    def runs(
        self, command: Program | None = None, handler: Handler | None = None, install: Program | None = None
    ) -> None:
        self.engine.program = function_image(command=command, handler=handler, install=install)

    async def call(self, function: FunctionRecord, params: Any = None, timeout_s: float | None = None) -> Outcome:
        inv = Invocation(function=function.name, params={} if params is None else params, timeout_s=timeout_s)

        async def on_log(stream: int, data: bytes) -> None:
            self.logs.append((stream, data))

        return await self.executor.run(RUNTIME, function, inv, "c1", on_log)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    engine = FakeEngine(images={PYTHON_IMAGE})
    store = FakeObjectStore()
    artifacts = ArtifactCache(cast(ObjectStore, store), tmp_path / "cache", owner=CALL_USER)
    deps = DependencyImages(engine, artifacts, NODE, None)
    executor = Executor(engine=engine, artifacts=artifacts, deps=deps, node_id=NODE, policy="none", ca_bundle=None)
    yield Node(engine, store, deps, executor)
    # Whatever a test did: every container the executor created was removed, once.
    assert engine.live == []
    assert sorted(engine.removed) == sorted(engine.containers)
    assert engine.crashes == []
    await engine.close()


# --- functions ----------------------------------------------------------------------------
async def dice(p: Process) -> int:
    """A command-protocol function: params on stdin, logs on stderr, the result on stdout."""
    assert p.file("main.py") == CODE["main.py"].encode()  # it runs in its code's directory
    params = json.loads(await p.read())
    await p.err(b"rolling " + json.dumps(params).encode() + b"\n")
    await p.out(json.dumps([params["sides"]] * params["count"]).encode() + b"\n")
    return 0


async def crash(p: Process) -> int:
    await p.err(b"x" * 10_000 + b"\nTraceback (most recent call last):\nValueError: boom\n")
    return 3


async def hang(p: Process) -> int:
    await p.out(b'{"partial":')
    await p.hang()


async def flood(p: Process) -> int:
    chunk = b"x" * 65536
    while True:
        await p.out(chunk)


async def greedy(p: Process) -> int:
    await p.err(b"allocating\n")
    p.oom_kill()


async def echo(call: HandlerCall) -> Any:
    await call.log(f"got {call.params['x']}\n")
    if call.params.get("fail"):
        raise ValueError(f"bad input: {call.params['fail']}")
    return {"echo": call.params}


# --- the command protocol -----------------------------------------------------------------
async def test_a_command_call_returns_the_json_its_process_prints(node: Node) -> None:
    node.runs(command=dice)
    fn = node.function(memory_mb=512)
    out = await node.call(fn, {"count": 2, "sides": 6})
    assert out.status == CallStatus.DONE and out.error is None
    assert out.result == [6, 6] and out.exit_code == 0 and out.served == "cold"
    [cid] = node.engine.containers
    assert out.container == cid
    c = node.engine.containers[cid]
    assert c.spec.image == PYTHON_IMAGE and c.spec.cmd == ["sh", "/faas/run.sh"] and c.spec.workdir == "/app"
    assert c.labels == {"faas.node": NODE, "faas.call": "c1", "faas.function": "dice"}
    assert c.spec.memory_mb == 512 and not c.spec.network and c.spec.stdin and not c.spec.keep_logs
    assert c.files["/faas/params.json"] == encode_json({"count": 2, "sides": 6})
    assert c.files["/app/requirements.txt"] == b"left-pad\n"
    # It runs as the call user, who owns everything copied in (to read it, and write there).
    assert c.spec.user == "10001:10002"
    assert {c.owners[p] for p in ("/app", "/app/main.py", "/faas", "/faas/run.sh", "/faas/params.json")} == {CALL_USER}
    calls = node.engine.calls
    assert calls.index("attach") < calls.index("start")  # no output is missed
    assert node.logs == [(STDERR, b'rolling {"count": 2, "sides": 6}\n')]
    assert node.engine.removed == [cid]


async def test_a_non_zero_exit_is_an_error_carrying_the_stderr_tail(node: Node) -> None:
    node.runs(command=crash)
    out = await node.call(node.function())
    assert out.status == CallStatus.ERROR and out.exit_code == 3 and out.result is None
    assert out.error is not None and out.error.type == "NonZeroExit"
    message = out.error.message
    assert message.startswith("exit code 3: ") and message.endswith("ValueError: boom")
    assert len(message) < 4200  # the tail of the 10 kB, not all of it
    assert node.engine.removed == [out.container]


async def test_a_call_past_its_timeout_ends_timeout_and_its_container_is_removed(node: Node) -> None:
    node.runs(command=hang)
    out = await node.call(node.function(), timeout_s=0.05)
    assert out.status == CallStatus.TIMEOUT
    assert out.error is not None and out.error.type == "Timeout" and "0.05s" in out.error.message
    assert out.container is not None and node.engine.removed == [out.container]
    assert node.engine.containers[out.container].exit_code == 137  # killed by the teardown


async def test_output_past_the_result_limit_ends_the_call_at_once(node: Node) -> None:
    node.runs(command=flood)
    fn = node.function(result_bytes=64 * 1024)
    out = await node.call(fn)
    assert out.status == CallStatus.ERROR
    assert out.error is not None and out.error.type == "ResultTooLarge"
    assert out.container is not None and node.engine.removed == [out.container]
    # the flood was stopped: read up to the limit, held back by the pipe, then killed
    assert node.engine.containers[out.container].written[STDOUT] < 2 * PIPE_BYTES


async def test_the_memory_limit_is_told_apart_from_a_crash(node: Node) -> None:
    node.runs(command=greedy)
    out = await node.call(node.function(memory_mb=128))
    assert out.status == CallStatus.ERROR and out.exit_code == 137
    assert out.error is not None and out.error.type == "MemoryLimit" and "128 MB" in out.error.message


async def test_params_too_large_are_refused_without_a_container(node: Node) -> None:
    node.runs(command=dice)
    out = await node.call(node.function(params_bytes=1024), {"blob": "a" * 2000})
    assert out.status == CallStatus.ERROR
    assert out.error is not None and out.error.type == "ParamsTooLarge"
    assert node.engine.calls == []  # nothing was asked of Docker


# --- the handler protocol -----------------------------------------------------------------
async def test_a_handler_call_returns_the_handlers_result(node: Node) -> None:
    node.runs(handler=echo)
    fn = node.function(handler="main:handler")
    out = await node.call(fn, {"x": 1})
    assert out.status == CallStatus.DONE and out.result == {"echo": {"x": 1}}
    [c] = node.engine.containers.values()
    assert "/faas/params.json" not in c.files  # the params go over the protocol
    assert c.stdin_bytes == b'{"id":"c1","params":{"x":1}}\n'
    assert node.logs == [(STDOUT, b"got 1\n")]
    assert node.engine.removed == [c.cid]


async def test_a_handlers_exception_is_the_calls_error(node: Node) -> None:
    node.runs(handler=echo)
    out = await node.call(node.function(handler="main:handler"), {"x": 2, "fail": "no"})
    assert out.status == CallStatus.ERROR
    assert out.error is not None and (out.error.type, out.error.message) == ("ValueError", "bad input: no")


async def test_a_handler_that_cannot_be_loaded_is_the_calls_error(node: Node) -> None:
    node.runs(handler=echo)
    out = await node.call(node.function(handler="missing:handler"))
    assert out.status == CallStatus.ERROR
    assert out.error is not None and out.error.type == "ModuleNotFoundError" and "missing" in out.error.message


async def test_a_handler_on_a_runtime_without_a_handler_command_is_refused(node: Node) -> None:
    node.runs(handler=echo)
    fn = node.function(handler="main:handler")
    plain = RUNTIME.model_copy(update={"handler_command": None})
    out = await node.executor.run(plain, fn, Invocation(function=fn.name), "c1")
    assert out.status == CallStatus.ERROR and out.error is not None and "handler_command" in out.error.message
    assert node.engine.calls == []


# --- teardown -------------------------------------------------------------------------------
async def handler_exits(call: HandlerCall) -> Any:
    raise Exit(7)  # os._exit in the handler


ENDINGS: dict[str, tuple[dict[str, Any], dict[str, Any], CallStatus]] = {
    "done": ({"command": dice}, {}, CallStatus.DONE),
    "exit": ({"command": crash}, {}, CallStatus.ERROR),
    "timeout": ({"command": hang}, {}, CallStatus.TIMEOUT),
    "flood": ({"command": flood}, {}, CallStatus.ERROR),
    "oom": ({"command": greedy}, {}, CallStatus.ERROR),
    "handler-done": ({"handler": echo}, {"handler": "main:handler"}, CallStatus.DONE),
    "handler-error": ({"handler": echo}, {"handler": "main:handler"}, CallStatus.ERROR),
    "handler-exit": ({"handler": handler_exits}, {"handler": "main:handler"}, CallStatus.ERROR),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_every_container_is_removed_however_the_call_ends(node: Node, ending: str) -> None:
    image, function, status = ENDINGS[ending]
    node.runs(**image)
    params = {"count": 1, "sides": 2, "x": 0, "fail": ending == "handler-error"}
    out = await node.call(node.function(**function), params, timeout_s=0.5)
    assert out.status == status
    assert len(node.engine.containers) == 1 and node.engine.removed == [out.container]
    assert node.engine.live == []


async def test_a_cancelled_call_still_removes_its_container(node: Node) -> None:
    node.runs(command=hang)
    call = asyncio.create_task(node.call(node.function()))
    await node.engine.until(lambda: node.engine.starts)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert node.engine.live == [] and node.engine.removed == node.engine.starts


# --- dependencies -------------------------------------------------------------------------
async def installs(p: Process) -> int:
    """``pip install``: what it installs stays in the image committed from its container."""
    assert p.argv == ["sh", "-c", RUNTIME.dependencies]
    p.files["/usr/lib/python3/site-packages/left_pad.py"] = b"pad = str.rjust\n"
    await p.out(b"Successfully installed left-pad\n")  # sent to stderr by install.sh
    return 0


async def uses_left_pad(p: Process) -> int:
    assert "/usr/lib/python3/site-packages/left_pad.py" in p.files
    return await dice(p)


async def test_dependencies_are_installed_once_into_an_image_the_calls_start_from(node: Node) -> None:
    node.runs(command=uses_left_pad, install=installs)
    fn = node.function(has_dependencies=True)
    for _ in range(2):
        out = await node.call(fn, {"count": 1, "sides": 4})
        assert out.status == CallStatus.DONE and out.result == [4]
    image = deps_image_name(RUNTIME, fn)
    build, first, second = node.engine.containers.values()
    assert build.spec.cmd == ["sh", "/faas/install.sh"] and build.spec.image == PYTHON_IMAGE and build.spec.network
    # The install may write the system's site-packages; root without capabilities may only
    # touch what it owns, so the build's copy of the code is root's. Calls: the call user's.
    assert build.spec.user == "0:0" and {build.owners[p] for p in ("/app", "/app/requirements.txt")} == {(0, 0)}
    assert first.owners["/app/main.py"] == CALL_USER
    assert first.spec.user == second.spec.user == "10001:10002"
    assert build.log == [(STDERR, b"Successfully installed left-pad\n")]
    assert node.engine.commits == [(build.cid, image)] and node.deps.builds == 1
    assert first.spec.image == second.spec.image == image


async def test_the_install_output_goes_live_to_the_call_that_waited_for_it(node: Node) -> None:
    node.runs(command=uses_left_pad, install=installs)
    fn = node.function(has_dependencies=True)
    await node.call(fn, {"count": 1, "sides": 4})
    assert (INSTALL, b"Successfully installed left-pad\n") in node.logs
    node.logs.clear()
    await node.call(fn, {"count": 1, "sides": 4})  # the image exists: nothing is installed
    assert node.logs and all(stream != INSTALL for stream, _ in node.logs)


async def test_a_failed_install_is_the_error_with_its_output(node: Node) -> None:
    async def fails(p: Process) -> int:
        await p.out(b"ERROR: No matching distribution found for left-pad\n")
        return 1

    node.runs(command=dice, install=fails)
    with pytest.raises(DependenciesFailed, match=r"exit 1.*No matching distribution"):
        await node.call(node.function(has_dependencies=True))
    assert node.engine.commits == [] and len(node.engine.containers) == 1


async def test_a_call_cancelled_while_its_container_is_made_removes_it(node: Node) -> None:
    """Docker makes the container all the same: the call, cancelled (a cancel request, the
    agent stopping), removes it once made (the fixture checks that none is left)."""
    node.runs(command=dice)
    release = asyncio.Event()
    asked = asyncio.Event()
    create = node.engine.create

    async def docker_makes(spec: Any) -> str:
        await release.wait()
        return await create(spec)

    async def slow_create(spec: Any) -> str:
        asked.set()
        # the request has reached Docker: it is done whether the caller waits or not
        return await asyncio.shield(made.setdefault("task", asyncio.ensure_future(docker_makes(spec))))

    made: dict[str, asyncio.Future[str]] = {}

    node.engine.create = slow_create  # type: ignore[method-assign]
    call = asyncio.create_task(node.call(node.function(), {"count": 1, "sides": 6}))
    await asked.wait()
    call.cancel()
    await asyncio.sleep(0)  # the call is waiting for the container now, cancelled
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    await made["task"]
    assert len(node.engine.containers) == 1 and node.engine.live == []
