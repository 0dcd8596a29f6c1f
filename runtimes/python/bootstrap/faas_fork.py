"""Running a warm-runtime command in a fork of the shim's pre-started interpreter (see
faas_bootstrap.py, warm mode).

When the payload's ``run`` is plainly this interpreter running a script with plain arguments
(``python3 main.py a 'b c'``: no shell syntax, no interpreter options, the same binary), the
shim forks and the child runs the script as ``python3`` would: ``__main__``, ``__file__``,
``sys.argv``, ``sys.path[0]``, the params on fd 0, the exit status (``SystemExit`` included),
an uncaught exception's traceback from the script's frame on, non-daemon threads joined and
``atexit`` run before it leaves. The parent then writes the end marker (see
node_agent/wire/endmarker.py) as the shell script would. No interpreter start and no
``import json`` per call, which together cost more than the rest of a warm call
(docs/benchmarks.md).
"""

import atexit
import builtins
import importlib.machinery
import io
import os
import shlex
import shutil
import sys
import threading
import traceback
import types

# Characters that make a command more than "an interpreter and its words" for sh -c.
_SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]{}#~\n\t")


def python_command(run: str) -> "list[str] | None":
    """``run`` as an argv if it is this interpreter running a script with plain arguments
    (``python3 main.py a b``), else None (sh runs it)."""
    if _SHELL_SYNTAX.intersection(run):
        return None
    try:
        argv = shlex.split(run)
    except ValueError:
        return None
    if len(argv) < 2 or argv[1].startswith("-"):
        return None
    exe = shutil.which(argv[0])
    if exe is None or os.path.realpath(exe) != os.path.realpath(sys.executable):
        return None
    return argv


def run_script(argv: "list[str]", path: str) -> None:
    """In a forked child: run ``argv[1]`` as ``python3`` would (never returns)."""
    try:
        os.chdir(path)
    except OSError as exc:
        print(f"sh: cd: {path}: {exc.strerror}", file=sys.stderr)
        os._exit(125)
    fd = os.open("/faas/params.json", os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    sys.stdin = sys.__stdin__ = open(0, encoding=sys.stdin.encoding, errors=sys.stdin.errors, closefd=False)
    script = os.path.abspath(argv[1])
    if not os.path.isfile(script):
        print(f"{argv[0]}: can't open file {script!r}: [Errno 2] No such file or directory", file=sys.stderr)
        os._exit(2)
    sys.argv = argv[1:]
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=script, __cached__=None, __builtins__=builtins)
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    sys.modules["__main__"] = main
    status = 0
    try:
        with io.open_code(script) as f:
            code = compile(f.read(), script, "exec")
        exec(code, main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except BaseException as exc:  # what the interpreter prints, from the script's frame on
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        status = 1
    _exit(status)


def _exit_status(code: object) -> int:
    """What the interpreter exits with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(status: int) -> None:
    """The interpreter's exit as a script sees it (its non-daemon threads joined, atexit
    handlers run, stdout and stderr flushed), without tearing down every object: in a fork,
    that teardown copies the whole inherited heap and costs more than the call."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except Exception:  # as the interpreter does: exit anyway
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            status = 120  # the interpreter's status when flushing the standard streams fails
    os._exit(status)


def _oom_kills() -> int:
    for f in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(f) as fh:
                for line in fh:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v)
        except OSError:
            continue
    return 0


def fork_run(argv: "list[str]", path: str, nonce: str) -> None:
    """Run the script in a child of this interpreter, then write the end marker (see
    node_agent/wire/endmarker.py) with its exit status, as the shell script would."""
    pid = os.fork()
    if pid == 0:
        try:
            run_script(argv, path)  # leaves the process itself
        except BaseException:  # failed before the script ran (/faas/params.json missing...)
            traceback.print_exc()
        os._exit(126)  # never back into the shim's code
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc < 0:  # killed by a signal: what sh reports
        rc = 128 - rc
    oom = _oom_kills() if rc else 0
    os.write(2, f"\036faas-end:{nonce}\n".encode())
    os.write(1, f"\036faas-end:{nonce}:{rc}:{oom}\n".encode())
