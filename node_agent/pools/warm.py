"""warm-runtime containers: started ahead from a runtime's image with no function in them,
given one function's code and one call, then destroyed.

Two kinds, by what the image declares:

* **shim** (the image has the label ``faas.handler-command``, as faas-python and faas-node
  do): the runtime's handler shim starts in warm mode (``FAAS_WARM=1``) with its interpreter
  loaded, says ``{"kind":"waiting"}``, and takes a JSON line and a tar of the code, which it
  unpacks in-process. A handler function whose runtime uses that same shim is loaded there,
  so its call costs no interpreter start; anything else (the command protocol, another
  handler shim) runs through ``sh -c`` :data:`~node_agent.scripts.SHIM_EXEC_SCRIPT`, except
  that the Python shim runs a plain ``python3 main.py [args]`` command in a fork of its
  loaded interpreter (runtimes/python/bootstrap/faas_fork.py).
* **shell** (any other image): ``sh`` reads a line ``<nonce> <size>`` and a tar
  (:data:`~node_agent.scripts.WARM_RUNTIME_CMD`).

Either way a command-protocol call ends on its end marker (wire/endmarker.py), not when the
container exits.
"""

import json
import shlex
from dataclasses import dataclass

from node_agent.containers.artifacts import Owner, call_tar
from node_agent.containers.docker import STDERR, Attached, Engine
from node_agent.containers.scripts import SHIM_EXEC_SCRIPT, WARM_RUNTIME_CMD, entry_script, warm_command_script
from node_agent.errors import AgentError
from node_agent.wire.endmarker import new_nonce
from schemas import FunctionRecord, RuntimeSpec

SHIM_LABEL = "faas.handler-command"
WAITING = b'{"kind":"waiting"}\n'
MAX_HELLO = 64 * 1024


class ShimNotWaiting(AgentError):
    kind = "ShimNotWaiting"


async def warm_command(engine: Engine, runtime: RuntimeSpec) -> tuple[list[str], str | None]:
    """The command of a warm container of ``runtime`` and its shim (None: a shell container)."""
    shim = (await engine.image_labels(runtime.image)).get(SHIM_LABEL)
    if shim:
        return shlex.split(shim), shim
    return list(WARM_RUNTIME_CMD), None


async def wait_for_shim(attached: Attached) -> None:
    """Until the shim says it waits for a function (its interpreter is loaded)."""
    out = bytearray()
    err = bytearray()
    while not out.startswith(WAITING):
        frame = await attached.read()
        if frame is None:
            tail = err[-2000:].decode(errors="replace")
            raise ShimNotWaiting(f"the shim exited before it was ready: {tail}")
        stream, data = frame
        if stream == STDERR:
            err += data
            del err[:-MAX_HELLO]
            continue
        out += data
        if len(out) >= len(WAITING) and not out.startswith(WAITING):
            raise ShimNotWaiting(f"the shim said {bytes(out[:200])!r} instead of waiting")


@dataclass
class Payload:
    """What a call writes to a warm-runtime container's stdin."""

    data: bytes
    nonce: str | None  # the end marker's, for the command protocol
    handler: bool  # the handler protocol: a shim answers (ready, then one reply)
    # the runtime's own shim loaded the handler: it goes on serving it, call after call
    in_process: bool = False


def payload(
    shim: str | None, runtime: RuntimeSpec, function: FunctionRecord, code: bytes, params_json: bytes, owner: Owner
) -> Payload:
    """The code, the call's files and how to run them, for a container of either kind. It is
    unpacked by the container's own (non-root) user, into directories ``owner`` has (the
    factory put them in before the container started)."""
    in_process = (
        shim is not None
        and function.handler is not None
        and shlex.split(runtime.handler_command or "") == shlex.split(shim)
    )
    files: dict[str, tuple[bytes, int]] = {}
    if not in_process:
        script = entry_script(runtime, function) if function.handler else warm_command_script(runtime)
        files["/faas/run.sh"] = (script, 0o755)
    if not function.handler:
        files["/faas/params.json"] = (params_json, 0o644)
    tar = call_tar(code, files, owner)
    nonce = None if function.handler else new_nonce()
    if shim is None:
        # the shell reads the nonce too; a handler's run.sh execs the shim, which never uses it
        line = f"{nonce or new_nonce()} {len(tar)}\n".encode()
    else:
        line = json.dumps(
            {
                "size": len(tar),
                "path": runtime.path,
                "handler": function.handler if in_process else None,
                "max_log_bytes": function.limits.log_bytes,
                "script": SHIM_EXEC_SCRIPT,
                # a shim may run this itself rather than through the script (Python: a fork)
                "run": None if function.handler else runtime.run,
                "nonce": nonce or new_nonce(),
            }
        ).encode()
        line += b"\n"
    return Payload(data=line + tar, nonce=nonce, handler=function.handler is not None, in_process=in_process)
