"""The program of a fake runtime image: what its shell does with the scripts the agent puts in a
container (node_agent/containers/scripts.py, deps.py) around one function written in Python,
so that a unit test runs the agent's real call code.

* ``sh /faas/run.sh`` (a call container): ``cd`` to the runtime's path (the code must be
  there, or it exits 125), then either the command protocol (``command``: the function's
  process, the params on its stdin from /faas/params.json, the result on stdout) or, with
  ``FAAS_HANDLER`` exported, the handler shim of runtimes/*/bootstrap (``handler``: JSON
  lines on the attached stdio, see faas_bootstrap.py).
* ``sh /faas/install.sh`` (a dependency build): ``install``, its stdout sent to stderr.

Anything else fails the test: the fake knows these scripts only.
"""

import inspect
import json
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.container import STDERR, STDOUT, Exit, Process, Program

INSTALL = "/faas/install.sh"


@dataclass
class HandlerCall:
    """One call as a fake handler sees it."""

    params: Any
    process: Process

    async def log(self, text: str, stream: str = "stdout") -> None:
        """What the shim sends for a ``print`` during the call."""
        await self.process.out(_line({"kind": "log", "stream": stream, "text": text}))


# A handler: the result of a call (or an awaitable of it); an exception is the call's error.
Handler = Callable[[HandlerCall], Any]


def function_image(
    command: Program | None = None, handler: Handler | None = None, install: Program | None = None
) -> Program:
    """A runtime image's program for a function: its ``command`` (command protocol) or
    ``handler`` (handler protocol), and what installing its dependencies does."""

    async def program(p: Process) -> int:
        if len(p.argv) != 2 or p.argv[0] != "sh":
            raise AssertionError(f"the fake runtime image runs the agent's scripts only, not {p.argv}")
        script = p.file(p.argv[1]).decode()
        return await _sh(p, script, install if p.argv[1] == INSTALL else command, handler)

    return program


async def _sh(p: Process, script: str, command: Program | None, handler: Handler | None) -> int:
    env, cwd = dict(p.env), p.cwd
    for line in script.splitlines():
        if not line or line.startswith("#"):
            continue
        match shlex.split(line):
            case ["cd", path, "||", "exit", code]:
                if not p.container.is_dir(path):
                    await p.err(f"sh: cd: can't cd to {path}\n".encode())
                    return int(code)
                cwd = path
            case ["export", assignment]:
                name, _, value = assignment.partition("=")
                env[name] = value
            case ["exec", *argv]:
                return await _exec(p, argv, env, cwd, command, handler)
            case _:
                raise AssertionError(f"the fake shell does not know {line!r}")
    return 0


async def _exec(
    p: Process, argv: list[str], env: dict[str, str], cwd: str, command: Program | None, handler: Handler | None
) -> int:
    stdin: bytes | None = None
    stdout = STDOUT
    if argv[-1:] == ["1>&2"]:
        argv, stdout = argv[:-1], STDERR
    if argv[-2:-1] == ["<"]:
        stdin = p.file(posixpath.join(cwd, argv[-1]))
        argv = argv[:-2]
    if argv[:2] == ["sh", "-c"] and argv[2].startswith("$"):
        argv = [*argv[:2], env.get(argv[2][1:], "")]
    child = p.child(argv, env=env, cwd=cwd, stdin=stdin, stdout=stdout)
    if "FAAS_HANDLER" in env:
        if handler is None:
            raise AssertionError("the agent asked for the handler shim of an image given no handler")
        return await shim(child, handler)
    if command is None:
        raise AssertionError(f"the agent ran {argv} in an image given no command for it")
    return await command(child)


async def shim(p: Process, handler: Handler) -> int:
    """The handler shim (runtimes/python/bootstrap/faas_bootstrap.py ``main``): loads the
    handler (its module must be in the code), says ready, answers one JSON line per call."""
    path = p.env.get("FAAS_PATH", "/app")
    module, _, _ = p.env.get("FAAS_HANDLER", "main:handler").partition(":")
    base = posixpath.join(path, module.replace(".", "/"))
    if not any(name.startswith(base + ".") for name in p.files) and not p.container.is_dir(base):
        error = {"type": "ModuleNotFoundError", "message": f"No module named {module!r}", "traceback": ""}
        await p.out(_line({"kind": "init_error", "error": error}))
        return 1
    await p.out(_line({"kind": "ready"}))
    while line := await p.readline():
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            result = handler(HandlerCall(request.get("params"), p))
            if inspect.isawaitable(result):
                result = await result
            reply = _line({"id": request.get("id"), "ok": True, "result": result, "logs": ""})
        except Exit:  # the process ends (os._exit in the handler)
            raise
        except Exception as exc:  # an application error: reported, the shim stays up
            error = {"type": type(exc).__name__, "message": str(exc), "traceback": ""}
            reply = _line({"id": request.get("id"), "ok": False, "error": error, "logs": ""})
        await p.out(reply)
    return 0


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
