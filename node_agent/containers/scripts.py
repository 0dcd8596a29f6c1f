"""The shell scripts a container runs. User commands are embedded shell-quoted, so that a
warm container created before the function was known can still run it."""

import shlex

from schemas import FunctionRecord, RuntimeSpec


def entry_script(runtime: RuntimeSpec, function: FunctionRecord) -> bytes:
    """``/faas/run.sh``: enter the function's directory and run it: the command protocol with
    params on stdin, or the handler shim. Dependencies are in the image already (containers/deps.py)."""
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


def warm_command_script(runtime: RuntimeSpec) -> bytes:
    """``/faas/run.sh`` of a command-protocol call in a warm-runtime shell container: sourced
    by :data:`WARM_RUNTIME_CMD`, so the command runs in a subshell of that shell (no further
    ``sh`` to start), without the shell's own variables."""
    lines = [
        f"cd {shlex.quote(runtime.path)} || exit 125",
        f"(unset nonce n; eval {shlex.quote(runtime.run)}) < /faas/params.json",
    ]
    return ("\n".join(lines) + "\n").encode()


# What a warm-runtime container runs once the code is in place (the variable `nonce` set):
# source run.sh (a command in a subshell, or a handler shim exec'd), then write the end
# marker (wire/endmarker.py) with the exit status and the container's OOM kills (cgroup v2, else
# v1) on stderr and stdout. The call ends there, not when the container exits.
_OOM_KILLS = (
    "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do"
    ' [ -r "$f" ] && while read k v; do [ "$k" = oom_kill ] && oom=$v; done < "$f"; done'
)
_RUN_AND_MARK = (
    '. /faas/run.sh; rc=$?; oom=0; [ "$rc" -ne 0 ] && { ' + _OOM_KILLS + "; }; "
    'printf \'\\036faas-end:%s\\n\' "$nonce" >&2; printf \'\\036faas-end:%s:%d:%d\\n\' "$nonce" "$rc" "$oom"'
)

# A warm-runtime shell container (any image) waits for one payload on stdin: a line
# "<nonce> <size>", then a tar of that size (code, params, run.sh), unpacked at /.
# `read` in sh takes one byte at a time from a pipe, so head gets exactly the rest.
WARM_RUNTIME_CMD = ["sh", "-c", 'read nonce n && head -c "$n" | tar -x -C / && ' + _RUN_AND_MARK]

# What a runtime's shim (images labelled faas.handler-command, see pools/warm.py) execs for a
# command-protocol call once it has unpacked the code: the nonce comes on fd 3.
SHIM_EXEC_SCRIPT = "read nonce <&3 && exec 3<&- && " + _RUN_AND_MARK

# A warm-function container of a command-protocol function holds its code already and
# waits for one line: the params.
WARM_COMMAND_CMD = ["sh", "-c", "head -n 1 > /faas/params.json && exec sh /faas/run.sh"]
