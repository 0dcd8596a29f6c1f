"""Every ``faas`` command against a real platform (``faas up``'s processes, real containers),
run as a user runs it: a subprocess, its stdout piped (plain output) or ``-o json``, and once
on a pseudo-terminal (``script``) for the tables and the upload progress bar."""

import asyncio
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from faas_cli import exits
from faas_cli.up import Platform
from tests.e2e.platform_harness import base_url, running_platform
from tests.functions import PY_HANDLER, PYTHON_IMAGE

pytestmark = pytest.mark.e2e

BOOTSTRAP = "python3 /opt/faas/faas_bootstrap.py"
# Installs nothing from the network: prints what it would install, so the test needs no index.
FAKE_INSTALL = 'for p in $(cat requirements.txt); do echo "installing $p"; done; echo "install done"'


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, (self.code, self.out, self.err)
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


@pytest.fixture(scope="module")
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path_factory.mktemp("cli")) as p:
        yield p


def _base(platform: Platform) -> list[str]:
    # the CLI finds the admin token `faas up` wrote there by itself
    return ["--gateway", base_url(platform), "--data-dir", str(platform.data)]


async def faas(platform: Platform, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """``faas ARGS`` with stdout and stderr piped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "faas_cli",
        *_base(platform),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def faas_tty(platform: Platform, *args: str) -> Run:
    """``faas ARGS`` on a pseudo-terminal (util-linux ``script``): what a person sees."""
    command = shlex.join([sys.executable, "-m", "faas_cli", *_base(platform), *args])
    proc = await asyncio.create_subprocess_exec(
        "script",
        "-qec",
        command,
        "/dev/null",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if k != "FAAS_OUTPUT"}, "TERM": "xterm-256color", "COLUMNS": "160"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return Run(proc.returncode or 0, out.decode(errors="replace"), err.decode())


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.fixture(scope="module")
async def deployed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Runtime ``clipy`` and function ``clifn`` (the handler protocol), two versions."""
    spec = (
        await faas(
            platform, "-o", "json", "runtime", "register", "--name", "clipy", "--image", PYTHON_IMAGE,
            "--run", "python3 main.py", "--handler-command", BOOTSTRAP,
        )
    ).json()  # fmt: skip
    assert spec["name"] == "clipy"
    src = tmp_path_factory.mktemp("clifn")
    for name, text in PY_HANDLER.items():
        (src / name).write_text(text)
    for version in (1, 2):
        deploy = ("function", "deploy", "clifn", str(src), "--runtime", "clipy", "--handler", "main:handler")
        record = (await faas(platform, *deploy, "-o", "json")).json()
        assert record["version"] == version and record["handler"] == "main:handler"
    return "clifn"


async def test_runtime_and_function_commands(platform: Platform, deployed: str) -> None:
    listed = await faas(platform, "runtime", "list")
    assert listed.code == 0 and _rows(listed.out)[0][:2] == ["NAME", "IMAGE"]
    assert ["clipy", PYTHON_IMAGE, "/app", "python3", "main.py"] == _rows(listed.out)[1][:5]
    assert (await faas(platform, "runtime", "show", "clipy", "-o", "json")).json()["image"] == PYTHON_IMAGE

    functions = await faas(platform, "function", "list")
    assert [r[:3] for r in _rows(functions.out)[1:]] == [["clifn", "2", "clipy"]]
    described = await faas(platform, "function", "describe", deployed)
    fields = dict(line.split(":", 1) for line in described.out.splitlines())
    assert fields["handler"].strip() == "main:handler" and fields["versions"].strip() == "1, 2"
    assert (await faas(platform, "function", "versions", deployed, "-o", "json")).json() == [1, 2]
    assert _rows((await faas(platform, "function", "versions", deployed)).out)[1:] == [["1", "no"], ["2", "yes"]]

    missing = await faas(platform, "function", "describe", "nosuch")
    assert missing.code == exits.NOT_FOUND and missing.err.startswith("Error: HTTP 404")


async def test_invoke_calls_and_logs(platform: Platform, deployed: str) -> None:
    result = await faas(platform, "invoke", deployed, '{"x": "piped"}')
    assert result.code == 0 and json.loads(result.out)["echo"] == {"x": "piped"}  # the result alone
    record = (await faas(platform, "-o", "json", "invoke", deployed, '{"x": "json"}')).json()
    assert record["status"] == "DONE" and record["result"]["echo"] == {"x": "json"}

    # --follow: the call's output live on stderr, the result on stdout
    followed = await faas(platform, "invoke", deployed, '{"x": "live"}', "--follow")
    assert followed.code == 0 and json.loads(followed.out)["echo"] == {"x": "live"}
    assert "héllo from the handler live" in followed.err

    call_id = (await faas(platform, "invoke", deployed, '{"x": "later"}', "--async")).out.strip()
    assert call_id and " " not in call_id  # plain --async: the id alone, for $(...)
    lines = (await faas(platform, "logs", "-f", call_id, "-o", "json")).json_lines()
    assert lines[0]["text"] == "héllo from the handler later" and lines[-1] == {"id": call_id, "status": "DONE"}
    stored = await faas(platform, "logs", call_id)
    assert stored.code == 0 and (stored.out + stored.err).splitlines() == ["héllo from the handler later"]

    by_number = await faas(platform, "logs", str(record["number"]))  # a number works as well as an id
    assert (by_number.out + by_number.err).splitlines() == ["héllo from the handler json"]
    shown = await faas(platform, "call", str(record["number"]))
    assert "status:" in shown.out and "DONE" in shown.out and record["id"] in shown.out
    assert (await faas(platform, "call", "show", record["id"], "-o", "json")).json()["number"] == record["number"]
    page = (await faas(platform, "calls", "--function", deployed, "-o", "json")).json()
    assert {record["id"], call_id} <= {c["id"] for c in page["items"]}
    listed = await faas(platform, "calls", "--function", deployed, "--limit", "2")
    assert _rows(listed.out)[0][:5] == ["#", "ID", "FUNCTION", "VERSION", "STATUS"] and len(_rows(listed.out)) == 3

    failed = await faas(platform, "invoke", deployed, '{"fail": "oops"}')
    assert failed.code == exits.FAILED and failed.out == ""
    assert failed.err.strip().splitlines()[-1].endswith("ValueError: bad input: oops")
    assert (await faas(platform, "invoke", "nosuch")).code == exits.NOT_FOUND
    assert (await faas(platform, "call", "cnosuch")).code == exits.NOT_FOUND


async def test_a_first_calls_install_output_is_shown_live(platform: Platform, tmp_path: Path) -> None:
    register = ("runtime", "register", "--name", "clideps", "--image", PYTHON_IMAGE, "--run", "python3 main.py")
    assert (await faas(platform, *register, "--dependencies", FAKE_INSTALL)).code == 0
    (tmp_path / "main.py").write_text("import json, sys\nprint(json.dumps({'ok': True}))\n")
    (tmp_path / "requirements.txt").write_text("left-pad\nsix\n")
    deployed = await faas(
        platform, "function", "deploy", "clideps", str(tmp_path), "--runtime", "clideps", "-o", "json"
    )
    assert deployed.json()["has_dependencies"] is True
    first = await faas(platform, "invoke", "clideps", "--follow")
    assert first.code == 0 and json.loads(first.out) == {"ok": True}, first
    assert first.err.index("installing left-pad") < first.err.index("installing six") < first.err.index("install done")
    calls = (await faas(platform, "calls", "--function", "clideps", "-o", "json")).json()["items"]
    logs = (await faas(platform, "logs", calls[0]["id"], "-o", "json")).json()["lines"]
    assert [(e["stream"], e["text"]) for e in logs] == [
        ("install", "installing left-pad"),
        ("install", "installing six"),
        ("install", "install done"),
    ]
    again = await faas(platform, "invoke", "clideps", "--follow")  # built once: nothing to install
    assert again.code == 0 and "install" not in again.err


async def test_job_commands(platform: Platform) -> None:
    run = await faas(platform, "job", "run", "--name", "answer", "-f", PYTHON_IMAGE, "--", "python3", "-c", "print(42)")
    assert run.code == 0 and run.out == "42\n", run
    jobs = (await faas(platform, "jobs", "-o", "json")).json()["items"]
    job = next(j for j in jobs if j["name"] == "answer")
    assert job["status"] == "FINISHED" and job["command"] == ["python3", "-c", "print(42)"]
    assert (await faas(platform, "job", job["id"], "-o", "json")).json()["result"]["exit_code"] == 0
    assert (await faas(platform, "job", "logs", job["id"])).out == "42\n"
    listed = await faas(platform, "jobs")
    assert any(r[1:4] == [job["id"], "answer", PYTHON_IMAGE] for r in _rows(listed.out)[1:])

    sleeper = await faas(platform, "job", "run", PYTHON_IMAGE, "--", "python3", "-c", "import time; time.sleep(600)")
    job_id = sleeper.out.strip()
    assert sleeper.code == 0 and job_id.startswith("j")
    cancelled = await faas(platform, "job", "cancel", job_id)
    assert cancelled.code == 0 and job_id in cancelled.out
    ended = await faas(platform, "job", "logs", "-f", job_id)
    assert ended.code == exits.FAILED and f"job {job_id} ended CANCELLED" in ended.err
    again = await faas(platform, "job", "cancel", job_id)
    assert again.code == exits.CONFLICT and again.err.startswith("Error: HTTP 409")


async def test_nodes(platform: Platform) -> None:
    nodes = (await faas(platform, "nodes", "-o", "json")).json()
    assert len(nodes) == 1 and nodes[0]["fresh"] is True and nodes[0]["slots"] == 8
    rows = _rows((await faas(platform, "nodes")).out)
    assert rows[0][:3] == ["NODE", "FRESH", "AGE"] and rows[1][0] == nodes[0]["node_id"] and rows[1][1] == "yes"


async def test_tokens_and_exit_codes(platform: Platform, deployed: str) -> None:
    created = await faas(platform, "token", "create", "--role", "read", "--name", "cli-reader")
    token = created.out.strip()
    assert created.code == 0 and token.startswith("faas_") and "cannot be shown again" in created.err
    as_reader = ("--token", token)
    assert (await faas(platform, *as_reader, "function", "list")).code == 0
    refused = await faas(platform, *as_reader, "function", "delete", deployed)
    assert refused.code == exits.AUTH and "HTTP 403" in refused.err
    assert ["cli-reader", "read"] in [r[:2] for r in _rows((await faas(platform, "token", "list")).out)]
    assert (await faas(platform, "token", "revoke", "cli-reader", "-o", "json")).json() == {"revoked": "cli-reader"}

    down = await faas(platform, "--gateway", "http://127.0.0.1:9", "nodes")
    assert down.code == exits.UNAVAILABLE and down.err.startswith("Error: cannot reach the gateway")
    usage = await faas(platform, "invoke", deployed, "{not json")
    assert usage.code == exits.USAGE


async def test_delete_commands(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("print(1)\n")
    register = ("runtime", "register", "--name", "cligone", "--image", PYTHON_IMAGE, "--run", "python3 main.py")
    assert (await faas(platform, *register)).code == 0
    assert (await faas(platform, "function", "deploy", "gone", str(tmp_path), "--runtime", "cligone")).code == 0
    in_use = await faas(platform, "runtime", "delete", "cligone")
    assert in_use.code == exits.CONFLICT, in_use
    deleted = await faas(platform, "function", "delete", "gone")
    assert deleted.code == 0 and deleted.out == "deleted function gone\n"
    assert (await faas(platform, "function", "describe", "gone")).code == exits.NOT_FOUND
    assert (await faas(platform, "runtime", "delete", "cligone", "-o", "json")).json() == {"deleted": "cligone"}


async def test_call_cancel(platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import time\ntime.sleep(600)\n")
    register = ("runtime", "register", "--name", "clisleep", "--image", PYTHON_IMAGE, "--run", "python3 main.py")
    assert (await faas(platform, *register)).code == 0
    assert (await faas(platform, "function", "deploy", "sleeper", str(tmp_path), "--runtime", "clisleep")).code == 0
    call_id = (await faas(platform, "invoke", "sleeper", "--async")).out.strip()
    cancelled = await faas(platform, "call", "cancel", call_id)
    assert cancelled.code == 0 and call_id in cancelled.out
    ended = await faas(platform, "logs", "-f", call_id)
    assert ended.code == exits.FAILED and f"call {call_id} ended CANCELLED" in ended.err
    assert (await faas(platform, "call", "cancel", call_id)).code == exits.CONFLICT


async def test_on_a_terminal_tables_and_an_upload_bar(platform: Platform, deployed: str, tmp_path: Path) -> None:
    table = await faas_tty(platform, "function", "list")
    assert table.code == 0 and "─" in table.out and "clifn" in table.out
    (tmp_path / "blob.bin").write_bytes(os.urandom(3 << 20))  # big enough to watch
    (tmp_path / "main.py").write_text("def handler(params):\n    return 'big'\n")
    deploy = ("function", "deploy", "clibig", str(tmp_path), "--runtime", "clipy", "--handler", "main:handler")
    shown = await faas_tty(platform, *deploy)
    # a directory is zipped and sent as <its name>.zip; the bar ends full
    assert shown.code == 0 and f"uploading {tmp_path.name}.zip" in shown.out and "MiB" in shown.out
    invoked = await faas_tty(platform, "invoke", "clibig")
    assert invoked.code == 0 and "DONE" in invoked.out and "big" in invoked.out


async def test_shell_completion_of_names(platform: Platform, deployed: str, tmp_path: Path) -> None:
    words = ["faas", *_base(platform), "function", "describe", "cli"]
    env = {"_FAAS_COMPLETE": "bash_complete", "COMP_WORDS": shlex.join(words), "COMP_CWORD": str(len(words) - 1)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "faas_cli", stdout=asyncio.subprocess.PIPE, env={**os.environ, **env}
    )
    out, _ = await proc.communicate()
    assert "plain,clifn" in out.decode().splitlines()
    script = await faas(platform, "completion", "bash")
    assert script.code == 0 and "_FAAS_COMPLETE=bash_complete" in script.out
    # a bash that sources it, with `faas` on its PATH, completes a name from the gateway
    (tmp_path / "faas").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m faas_cli "$@"\n')
    (tmp_path / "faas").chmod(0o755)
    words = shlex.join(["faas", *_base(platform), "function", "describe", "cli"])
    test = f"{script.out}\nCOMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n"
    test += "_faas_completion faas; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    path = f"{tmp_path}:{os.environ['PATH']}"
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", test, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PATH": path}
    )
    out, _ = await proc.communicate()
    names = out.decode().split()
    assert "clifn" in names and all(n.startswith("cli") for n in names), names  # clibig too, if deployed
