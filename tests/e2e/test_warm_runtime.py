"""warm-runtime on real Docker: every call in a started container of the runtime's image
(the runtime's shim pre-started, or a plain shell for an image without one), ended on its
end marker, with every limit still holding, then destroyed."""

import io
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.pools.keys import PoolKey
from schemas import CallStatus, Finished, Invocation, Layout, Logs, RuntimeSpec
from tests.e2e.agent_harness import CallWatcher, agent_settings, publish
from tests.e2e.conftest import container_gone, wait_until
from tests.functions import CRASH, NODE_HANDLER, PY_HANDLER, PYTHON_IMAGE, handler_runtime, python_runtime, register

pytestmark = pytest.mark.e2e

FAKE_END = "\\x1efaas-end:0123456789abcdef01234567:0:0"
ECHO_AND_LOG = {
    "main.py": (
        "import json, sys\n"
        "params = json.load(sys.stdin)\n"
        "print('to the log', params['v'], file=sys.stderr, flush=True)\n"
        # a line that looks like an end marker, with a nonce that is not the call's
        f"sys.stdout.write('look-alike {FAKE_END}\\n')\n"
        "print(json.dumps(params, ensure_ascii=False))\n"
    ),
}
BIG_HOG = {"main.py": "x = bytearray(400 * 1024 * 1024)\nprint(len(x))\n"}
SLEEPY = {"main.py": "import time\ntime.sleep(60)\n"}
FLOOD = {"main.py": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"}
LOG_FLOOD = {
    "main.py": "import sys\nfor i in range(40000):\n    print('line', i, 'x' * 40, file=sys.stderr)\nprint(1)\n"
}


async def run(nc: Client, layout: Layout, runtime: str, function: str, params: Any = None, **inv: Any) -> Any:
    """One call: its Finished event and its log lines."""
    call_id = secrets.token_hex(8)
    async with CallWatcher(nc, layout, call_id) as w:
        await publish(nc, layout, runtime, Invocation(id=call_id, function=function, params=params or {}, **inv))
        done = await w.finished(60)
        logs = [e for e in w.events if isinstance(e, Logs)]
    return done, logs


async def warm_call(agent: NodeAgent, key: PoolKey, *args: Any, **inv: Any) -> tuple[Finished, list[Logs]]:
    """A call once the pool has an idle container, which it must be served by."""
    assert agent.pools is not None
    await wait_until(lambda: agent.pools.idle_counts().get(key))  # type: ignore[union-attr]
    before = agent.executor.served["stem"]
    done, logs = await run(*args, **inv)
    assert agent.executor.served["stem"] == before + 1, f"not served warm: {done} {agent.executor.served}"
    return done, logs


@pytest.fixture
async def agent(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> AsyncIterator[NodeAgent]:
    settings = agent_settings(
        nats_server, layout, tmp_path / "cache", policy="warm-runtime", runtimes=["python", "node"], pool_min=1
    )
    async with NodeAgent(settings) as a:
        yield a


async def test_command_calls_end_on_their_marker_within_every_limit(
    agent: NodeAgent, nc: Client, layout: Layout, docker: aiodocker.Docker
) -> None:
    js = nc.jetstream()
    rt = python_runtime()
    for name, files in (
        ("echo", ECHO_AND_LOG),
        ("crash", CRASH),
        ("hog", BIG_HOG),
        ("sleepy", SLEEPY),
        ("flood", FLOOD),
        ("logflood", LOG_FLOOD),
    ):
        await register(js, layout, rt, name, {**files, "requirements.txt": ""})
    key = PoolKey.runtime("python")

    done, logs = await warm_call(agent, key, nc, layout, "python", "echo", {"v": "ünï"})
    assert done.status == CallStatus.DONE, done
    # the result is everything the command printed, a look-alike marker included
    assert done.result == "look-alike \x1efaas-end:0123456789abcdef01234567:0:0\n" + '{"v": "ünï"}'
    lines = [(line.stream, line.text) for chunk in logs for line in chunk.lines]
    assert ("stderr", "to the log ünï") in lines
    assert not any("faas-end" in text for _, text in lines)  # the real marker is stripped
    await wait_until(lambda: container_gone(docker, done.container))  # used once, destroyed

    crashed, _ = await warm_call(agent, key, nc, layout, "python", "crash")
    assert crashed.status == CallStatus.ERROR and crashed.error is not None, crashed
    assert crashed.error.type == "NonZeroExit" and "exit code 3" in crashed.error.message
    assert "boom" in crashed.error.message and crashed.exit_code == 3

    hog, _ = await warm_call(agent, key, nc, layout, "python", "hog")
    assert hog.status == CallStatus.ERROR and hog.error is not None, hog
    assert hog.error.type == "MemoryLimit", hog.error

    slow, _ = await warm_call(agent, key, nc, layout, "python", "sleepy", timeout_s=2)
    assert slow.status == CallStatus.TIMEOUT, slow
    await wait_until(lambda: container_gone(docker, slow.container))

    flood, _ = await warm_call(agent, key, nc, layout, "python", "flood")
    assert flood.status == CallStatus.ERROR and flood.error is not None
    assert flood.error.type == "ResultTooLarge", flood.error

    chatty, logs = await warm_call(agent, key, nc, layout, "python", "logflood")
    assert chatty.status == CallStatus.DONE and chatty.result == 1, chatty
    assert logs and logs[-1].truncated
    # (the marker line may come in the chunk before the one flagged: a timer flush can take it)
    assert any(line.text.startswith("[faas: log truncated at") for chunk in logs for line in chunk.lines)

    containers = {d.container for d in (done, crashed, hog, slow, flood, chatty)}
    assert len(containers) == 6  # never one container for two calls


@pytest.mark.parametrize("kind", ["python", "node"])
async def test_a_handler_is_loaded_by_the_pre_started_shim(
    agent: NodeAgent, nc: Client, layout: Layout, docker: aiodocker.Docker, kind: str
) -> None:
    rt = handler_runtime(kind)
    handler = "main:handler" if kind == "python" else "index"
    files = PY_HANDLER if kind == "python" else NODE_HANDLER
    await register(nc.jetstream(), layout, rt, "h", files, handler=handler)
    key = PoolKey.runtime(rt.name)
    await run(nc, layout, rt.name, "h", {"x": 0})  # makes the runtime's pool wanted
    a, logs = await warm_call(agent, key, nc, layout, rt.name, "h", {"x": "ß"})
    b, _ = await warm_call(agent, key, nc, layout, rt.name, "h", {"x": 2})
    assert a.status == CallStatus.DONE and a.result["echo"] == {"x": "ß"}, a
    assert b.status == CallStatus.DONE and a.container != b.container
    texts = [line.text for chunk in logs for line in chunk.lines]
    assert any("ß" in t for t in texts), texts
    failed, _ = await warm_call(agent, key, nc, layout, rt.name, "h", {"fail": "x"})
    assert failed.status == CallStatus.ERROR and failed.error is not None
    assert failed.error.type == ("ValueError" if kind == "python" else "RangeError")
    await wait_until(lambda: container_gone(docker, a.container))


@pytest.fixture
async def shell_only_image(docker: aiodocker.Docker) -> AsyncIterator[str]:
    """faas-python without its shim label: a runtime image that only has a shell."""
    tag = f"faas-e2e-noshim:{secrets.token_hex(3)}"
    dockerfile = f'FROM {PYTHON_IMAGE}\nLABEL faas.handler-command=""\n'.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tf.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    await docker.images.build(fileobj=buf, encoding="identity", tag=tag, rm=True)
    try:
        yield tag
    finally:
        await docker.images.delete(tag, force=True)


async def test_an_image_without_a_shim_gets_shell_containers(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client, shell_only_image: str
) -> None:
    rt = RuntimeSpec(name="plain", image=shell_only_image, path="/app", dependencies="true", run="python3 main.py")
    await register(nc.jetstream(), layout, rt, "echo", {**ECHO_AND_LOG, "requirements.txt": ""})
    await register(nc.jetstream(), layout, rt, "crash", CRASH)
    settings = agent_settings(
        nats_server, layout, tmp_path / "cache", policy="warm-runtime", runtimes=["plain"], pool_min=1
    )
    async with NodeAgent(settings) as agent:
        done, _ = await warm_call(agent, PoolKey.runtime("plain"), nc, layout, "plain", "echo", {"v": 1})
        assert done.status == CallStatus.DONE and done.result.endswith('{"v": 1}'), done
        crashed, _ = await warm_call(agent, PoolKey.runtime("plain"), nc, layout, "plain", "crash")
        assert crashed.error is not None and "exit code 3" in crashed.error.message and "boom" in crashed.error.message


def warm_runtime_agent(nats_server: NatsServer, layout: Layout, tmp_path: Path, *runtimes: RuntimeSpec) -> NodeAgent:
    """An agent (to enter) serving ``runtimes`` under warm-runtime, one idle container each."""
    names = [rt.name for rt in runtimes]
    settings = agent_settings(
        nats_server, layout, tmp_path / "cache", policy="warm-runtime", runtimes=names, pool_min=1
    )
    return NodeAgent(settings)


async def inspect_each(agent: NodeAgent, nc: Client, layout: Layout, *runtimes: RuntimeSpec) -> dict[str, Any]:
    """Each runtime's ``inspect-<runtime>`` function called warm with ``{"v": "ü"}``: its
    result, by runtime name."""
    results = {}
    for rt in runtimes:
        done, _ = await warm_call(
            agent, PoolKey.runtime(rt.name), nc, layout, rt.name, f"inspect-{rt.name}", {"v": "ü"}
        )
        assert done.status == CallStatus.DONE, done
        results[rt.name] = done.result
    return results


INSPECT = {
    "helper.py": "X = 'sibling'\n",
    "main.py": (
        "import json, os, sys\n"
        "import helper\n"
        "params = json.load(sys.stdin)\n"
        "print(json.dumps({'argv': sys.argv, 'name': __name__, 'file': __file__, 'cwd': os.getcwd(),\n"
        "    'path0': sys.path[0], 'forked': 'tarfile' in sys.modules, 'helper': helper.X, 'params': params}))\n"
    ),
    "requirements.txt": "",
}
UNCAUGHT = {"main.py": "def f():\n    raise ValueError('bad ü')\n\nf()\n", "requirements.txt": ""}


async def test_a_plain_python_command_runs_in_a_fork_of_the_pre_started_interpreter(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    """``python3 main.py a 'b c'`` runs as python3 would run it, in a fork of the shim (whose
    modules, tarfile among them, are loaded already); with shell syntax, sh runs it."""
    js = nc.jetstream()
    forked = python_runtime("pyargs", run="python3 main.py a 'b c'")
    piped = python_runtime("pypipe", run="python3 main.py a 'b c' | cat")
    for rt in (forked, piped):
        await register(js, layout, rt, f"inspect-{rt.name}", INSPECT)
    await register(js, layout, forked, "uncaught", UNCAUGHT)
    await register(js, layout, forked, "crash", CRASH)
    async with warm_runtime_agent(nats_server, layout, tmp_path, forked, piped) as agent:
        results = await inspect_each(agent, nc, layout, forked, piped)
        expected = {
            "argv": ["main.py", "a", "b c"],
            "name": "__main__",
            "file": "/app/main.py",
            "cwd": "/app",
            "path0": "/app",
            "helper": "sibling",
            "params": {"v": "ü"},
        }
        assert results["pyargs"] == {**expected, "forked": True}
        assert results["pypipe"] == {**expected, "forked": False}

        failed, _ = await warm_call(agent, PoolKey.runtime("pyargs"), nc, layout, "pyargs", "uncaught")
        assert failed.status == CallStatus.ERROR and failed.error is not None, failed
        assert failed.exit_code == 1
        assert "ValueError: bad ü" in failed.error.message
        # the traceback starts at the script, as python3's would: no frame of the shim
        assert 'File "/app/main.py", line 4, in <module>' in failed.error.message
        assert not any(shim in failed.error.message for shim in ("faas_bootstrap", "faas_fork", "runpy"))

        crashed, _ = await warm_call(agent, PoolKey.runtime("pyargs"), nc, layout, "pyargs", "crash")
        assert crashed.exit_code == 3 and crashed.error is not None and "boom" in crashed.error.message


NODE_COMMAND = {
    "index.js": (
        "let s = '';\n"
        "process.stdin.on('data', (d) => (s += d));\n"
        "process.stdin.on('end', () => {\n"
        "  console.error('to the log', JSON.parse(s).v);\n"
        "  console.log(JSON.stringify({ echo: JSON.parse(s) }));\n"
        "});\n"
    ),
    "package.json": '{"name": "fn", "version": "1.0.0"}',
}


async def test_a_node_command_runs_from_the_node_shim_with_its_stdout_as_the_result(
    agent: NodeAgent, nc: Client, layout: Layout
) -> None:
    """The Node shim keeps the original stdout for itself (fd 1 goes to stderr); the command
    it starts gets that original stdout, so what it prints is still the result."""
    await register(nc.jetstream(), layout, handler_runtime("node"), "ncmd", NODE_COMMAND)
    done, logs = await warm_call(agent, PoolKey.runtime("node"), nc, layout, "node", "ncmd", {"v": "ü"})
    assert done.status == CallStatus.DONE and done.result == {"echo": {"v": "ü"}}, done
    assert ("stderr", "to the log ü") in [(line.stream, line.text) for chunk in logs for line in chunk.lines]


NODE_INSPECT = {
    "helper.js": "exports.X = 'sibling';\n",
    "index.js": (
        "const fs = require('fs');\n"
        "const helper = require('./helper');\n"
        "const params = JSON.parse(fs.readFileSync(0, 'utf8'));\n"
        "const inShim = Object.keys(require.cache).some((k) => k.endsWith('faas_bootstrap.js'));\n"
        "console.log(JSON.stringify({ argv: process.argv.slice(1), main: require.main === module,\n"
        "  file: __filename, cwd: process.cwd(), helper: helper.X, params, inShim }));\n"
    ),
    "package.json": '{"name": "fn", "version": "1.0.0"}',
}
NODE_UNCAUGHT = {"index.js": "function f() {\n  throw new Error('bad ü');\n}\nf();\n", "package.json": "{}"}
NODE_EXIT = {"index.js": "console.error('exiting with 3');\nprocess.exit(3);\n", "package.json": "{}"}
# an exit listener of the script's own still writes to the result, after its last line
NODE_LATE = {
    "index.js": "process.exitCode = 0;\nprocess.on('exit', (c) => console.log(JSON.stringify({ late: c })));\n",
    "package.json": "{}",
}


def node_runtime(name: str, run: str) -> RuntimeSpec:
    return handler_runtime("node", name=name).model_copy(update={"run": run})


async def test_a_plain_node_command_runs_in_the_pre_started_node_process(
    docker_ready: None, nats_server: NatsServer, layout: Layout, tmp_path: Path, nc: Client
) -> None:
    """``node index.js a b`` runs as node would run it, in the shim's own process (no node
    start per call); with shell syntax, sh starts a node as before."""
    js = nc.jetstream()
    inside = node_runtime("nodeargs", "node index.js a b")
    piped = node_runtime("nodepipe", "node index.js a b | cat")
    for rt in (inside, piped):
        await register(js, layout, rt, f"inspect-{rt.name}", NODE_INSPECT)
    for name, files in (("uncaught", NODE_UNCAUGHT), ("exit3", NODE_EXIT), ("late", NODE_LATE)):
        await register(js, layout, inside, name, files)
    async with warm_runtime_agent(nats_server, layout, tmp_path, inside, piped) as agent:
        results = await inspect_each(agent, nc, layout, inside, piped)
        expected = {
            "argv": ["/app/index.js", "a", "b"],
            "main": True,
            "file": "/app/index.js",
            "cwd": "/app",
            "helper": "sibling",
            "params": {"v": "ü"},
        }
        assert results["nodeargs"] == {**expected, "inShim": True}
        assert results["nodepipe"] == {**expected, "inShim": False}

        failed, _ = await warm_call(agent, PoolKey.runtime("nodeargs"), nc, layout, "nodeargs", "uncaught")
        assert failed.status == CallStatus.ERROR and failed.error is not None, failed
        assert failed.exit_code == 1
        assert "Error: bad ü" in failed.error.message and "/app/index.js:2" in failed.error.message
        assert not any(shim in failed.error.message for shim in ("faas_bootstrap", "faas_command"))

        exited, _ = await warm_call(agent, PoolKey.runtime("nodeargs"), nc, layout, "nodeargs", "exit3")
        assert exited.exit_code == 3 and exited.error is not None and "exiting with 3" in exited.error.message

        late, _ = await warm_call(agent, PoolKey.runtime("nodeargs"), nc, layout, "nodeargs", "late")
        assert late.status == CallStatus.DONE and late.result == {"late": 0}, late
