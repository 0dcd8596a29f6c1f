"""The shell scripts a container runs. User commands are embedded shell-quoted, so that a
warm container created before the function was known can still run it."""

import shlex

from schemas import FunctionRecord, RuntimeSpec


def entry_script(runtime: RuntimeSpec, function: FunctionRecord) -> bytes:
    """``/faas/run.sh``: enter the function's directory and run it: the command protocol with
    params on stdin, or the handler shim. Dependencies are in the image already (deps.py)."""
    lines = ["#!/bin/sh", f"cd {shlex.quote(runtime.path)} || exit 125"]
    if function.handler:
        if not runtime.handler_command:
            raise ValueError(f"runtime {runtime.name!r} has no handler_command")
        lines += [
            f"export FAAS_HANDLER={shlex.quote(function.handler)}",
            f"export FAAS_PATH={shlex.quote(runtime.path)}",
            f"export FAAS_MAX_LOG_BYTES={function.limits.log_bytes}",
            f"exec {runtime.handler_command}",
        ]
    else:
        lines.append(f"exec sh -c {shlex.quote(runtime.run)} < /faas/params.json")
    return ("\n".join(lines) + "\n").encode()


# A warm-runtime container waits for one payload on stdin: a line with the size of a tar,
# then the tar (code, params, run.sh), which it unpacks at / before running run.sh.
# `read` in sh takes one byte at a time from a pipe, so head gets exactly the rest.
WARM_RUNTIME_CMD = ["sh", "-c", 'read n && head -c "$n" | tar -x -C / && exec sh /faas/run.sh']

# A warm-function container of a command-protocol function holds its code already and
# waits for one line: the params.
WARM_COMMAND_CMD = ["sh", "-c", "head -n 1 > /faas/params.json && exec sh /faas/run.sh"]
