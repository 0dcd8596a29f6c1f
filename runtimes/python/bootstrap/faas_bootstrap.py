"""The handler-protocol shim: stays running in the container, loads the user's handler once
and serves calls as JSON lines.

    FAAS_HANDLER=module:function  (default main:handler), code in FAAS_PATH (default /app)

Protocol (one JSON object per line):
    shim -> agent  {"kind": "ready"} | {"kind": "init_error", "error": {...}}
    agent -> shim  {"id": "...", "params": <any JSON>}
    shim -> agent  {"kind": "log", "stream": "stdout"|"stderr", "text": "..."}  (0..n, during a call)
                   {"kind": "call", "ref": n, "function", "params", "wait"}  (0..n: faas.call)
    agent -> shim  {"kind": "call_result", "ref": n, "ok", "id", "result" | "error"}  (one per call line)
                   {"id": "...", "ok": true, "result": <JSON>, "logs": ""}
                   {"id": "...", "ok": false, "error": {"type", "message", "traceback"}, "logs": ""}

Warm mode (FAAS_WARM=1, warm-runtime pools): the shim starts before any function is known,
says {"kind": "waiting"} and reads one payload from stdin: a JSON line {"size", "path",
"handler", "max_log_bytes", "script"} and a tar of ``size`` bytes (the code, at /), which it
unpacks in-process. With a ``handler`` it loads it and goes on as above (the interpreter is
already started, so a call costs no interpreter start); otherwise it becomes ``sh -c
<script>`` (the command protocol), with the payload's ``nonce`` (of the call's end marker)
on fd 3 for the script to read, so that it is in no file, argument or environment.
A command that is plainly this interpreter running a script (``python3 main.py [args]``)
runs in a fork of this already started interpreter instead (faas_fork.py). With
FAAS_WARM_SOCKET=<path> it listens there before saying "waiting": a handler loaded later
serves its calls on the connection the agent made meanwhile (as with FAAS_SOCKET below), so a
stem cell promoted to a function's warm container needs no Docker attach stream either.

The protocol channel is a private copy of the original stdout and stdin, or, with
FAAS_SOCKET=<path>, the one connection accepted on a Unix socket listening there (the agent
connects from the host: no Docker attach stream on the path of a call). Either way fd 1 is
pointed at stderr so that nothing the function prints (Python, C extensions, subprocesses)
can corrupt it. What
the function prints through sys.stdout/sys.stderr during a call is captured as that call's
logs, sent to the agent as they happen (capped, with a visible marker).

Nested calls (faas.py beside this file: ``faas.call``, ``faas.acall``, ``faas.spawn``): a
thread reads the channel, handing calls to the main loop and the agent's answers to the
nested calls waiting for them, so that a handler blocked in ``faas.call`` gets its answer.
"""

import asyncio
import importlib
import inspect
import io
import json
import os
import queue
import sys
import threading
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a socket is used (a shim's start is on a call's path)
    import socket

MAX_LOG_CHARS = int(os.environ.get("FAAS_MAX_LOG_BYTES", str(1 << 20)))
TRUNCATED = "\n[faas: log truncated]\n"


class _Budget:
    """Log bytes a call may still print (shared by its stdout and stderr)."""

    def __init__(self, cap: int) -> None:
        self.left = cap
        self.truncated = False


class _LiveLog(io.TextIOBase):
    """sys.stdout / sys.stderr during a call: each write goes to the agent at once as a
    ``{"kind": "log"}`` line on the protocol channel, within the call's log budget."""

    def __init__(self, send, stream: str, budget: _Budget) -> None:  # type: ignore[no-untyped-def]
        self._send = send
        self.stream = stream
        self.budget = budget
        self._pending = ""
        # the stray-output thread (socket mode) writes here too
        self._lock = threading.RLock()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self._lock:
            return self._write(s)

    def _write(self, s: str) -> int:
        b = self.budget
        if b.truncated or not s:
            return len(s)
        text = s[: b.left]
        b.left -= len(text)
        self._pending += text
        if "\n" in text or len(self._pending) > 8192:
            self.flush()
        if len(s) > len(text):
            b.truncated = True
            self.flush()
            self._send({"kind": "log", "stream": "stderr", "text": TRUNCATED})
        return len(s)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._send({"kind": "log", "stream": self.stream, "text": self._pending})
                self._pending = ""


class _StrayOutput:
    """Socket mode: fd 1 and fd 2 point at a pipe that a thread reads, so that what C code and
    subprocesses write there is logged with the call, in order, before its reply; between
    calls it goes to the container's original stderr."""

    def __init__(self) -> None:
        import fcntl
        import termios

        self._ioctl, self._fionread = fcntl.ioctl, termios.FIONREAD
        self.original = os.dup(2)
        self._r, w = os.pipe()
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.close(w)
        self.target: _LiveLog | None = None
        self._busy = 0  # bytes read from the pipe and not yet handed on
        self._done = threading.Condition()
        threading.Thread(target=self._pump, name="faas-stray-output", daemon=True).start()

    def _pending(self) -> int:
        buf = bytearray(4)
        self._ioctl(self._r, self._fionread, buf)
        return int.from_bytes(buf, sys.byteorder)

    def _pump(self) -> None:
        import select

        while True:
            select.select([self._r], [], [])
            # Bytes move from "in the pipe" to "busy" under the lock, so that settle() never
            # sees them in neither place.
            with self._done:
                n = self._pending()
                self._busy += n
            if n == 0:  # every writer is gone
                return
            data = os.read(self._r, n)
            target = self.target
            if target is not None:
                target.write(data.decode("utf-8", errors="replace"))
                target.flush()
            else:
                os.write(self.original, data)
            with self._done:
                self._busy -= n
                self._done.notify_all()

    def settle(self) -> None:
        """Until everything written to fd 1/2 so far is handed on (a call ends after this)."""
        with self._done:
            while self._pending() or self._busy:
                self._done.wait(0.001)


def _error(exc: BaseException) -> dict:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _listen(path: str) -> "socket.socket":
    """A Unix socket listening on ``path`` (the agent may connect at once: it waits in the backlog)."""
    import socket

    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)  # the agent may run as another user than this container
    server.listen(1)
    return server


def _accept(server: "socket.socket") -> "tuple[io.TextIOBase, io.BufferedIOBase]":
    """Take the agent's connection: (protocol writer, request reader)."""
    conn, _ = server.accept()
    server.close()
    return conn.makefile("w", encoding="utf-8", buffering=1), conn.makefile("rb")  # type: ignore[return-value]


def main(stdin_bytes: "io.BufferedIOBase | None" = None, server: "socket.socket | None" = None) -> None:
    """Serve the handler; the protocol over ``server`` (a stem cell's socket, listening since
    its start) or FAAS_SOCKET's if either is there, else over stdio."""
    socket_path = os.environ.pop("FAAS_SOCKET", "")
    if server is None and socket_path:
        server = _listen(socket_path)
    stray: _StrayOutput | None = None
    if server is not None:
        proto, stdin_bytes = _accept(server)
        stray = _StrayOutput()
    else:
        proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)  # fd 1 now goes to stderr: stray output never reaches the protocol
    proto_lock = threading.Lock()
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", buffering=1, closefd=False)

    def send(obj: dict) -> None:
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
        with proto_lock:
            proto.write(line)
            proto.flush()

    import faas  # beside this file, before the function's directory is on the path

    channel = faas._bind(send)
    path = os.environ.get("FAAS_PATH", "/app")
    spec = os.environ.get("FAAS_HANDLER", "main:handler")
    os.chdir(path)
    sys.path.insert(0, path)
    try:
        module_name, _, func_name = spec.partition(":")
        handler = getattr(importlib.import_module(module_name), func_name or "handler")
        if not callable(handler):
            raise TypeError(f"{spec} is not callable")
    except BaseException as exc:  # the init error is the answer to every call
        send({"kind": "init_error", "error": _error(exc)})
        sys.exit(1)

    loop = asyncio.new_event_loop() if inspect.iscoroutinefunction(handler) else None
    send({"kind": "ready"})
    stdin = io.TextIOWrapper(stdin_bytes or sys.stdin.buffer, encoding="utf-8")
    requests: queue.SimpleQueue[dict | None] = queue.SimpleQueue()

    def read() -> None:
        for line in stdin:
            if not line.strip():
                continue
            message = json.loads(line)
            if message.get("kind") == "call_result":
                channel.deliver(message)
            else:
                requests.put(message)
        requests.put(None)

    threading.Thread(target=read, name="faas-channel", daemon=True).start()
    while (request := requests.get()) is not None:
        budget = _Budget(MAX_LOG_CHARS)
        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _LiveLog(send, "stdout", budget), _LiveLog(send, "stderr", budget)
        if stray is not None:
            stray.target = sys.stderr
        try:
            result = handler(request.get("params"))
            if inspect.isawaitable(result):
                result = (loop or asyncio.new_event_loop()).run_until_complete(result)
            try:
                payload = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"the result is not JSON-serializable: {exc}") from None
            reply = f'{{"id":{json.dumps(request.get("id"))},"ok":true,"result":{payload},"logs":""}}'
        except BaseException as exc:  # an application error: report it, stay usable
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = json.dumps(
                {"id": request.get("id"), "ok": False, "error": _error(exc), "logs": ""}, ensure_ascii=False
            )
        finally:
            if stray is not None:
                stray.settle()
                stray.target = None
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = real_out, real_err
        with proto_lock:
            proto.write(reply + "\n")
            proto.flush()


def warm() -> None:
    """Wait for one function (see the module's docstring), then serve it."""
    global MAX_LOG_CHARS
    import tarfile

    import faas_fork  # beside this file; loaded before the call, with what it needs

    del os.environ["FAAS_WARM"]
    # FAAS_WARM_SOCKET: listen before saying "waiting", so the agent connects while the
    # cell is idle; a handler's calls then go over the socket, a command's over stdio.
    socket_path = os.environ.pop("FAAS_WARM_SOCKET", "")
    server = _listen(socket_path) if socket_path else None
    stdin = sys.stdin.buffer
    os.write(1, b'{"kind":"waiting"}\n')
    line = stdin.readline()
    if not line:
        sys.exit(0)
    load = json.loads(line)
    data = stdin.read(load["size"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall("/")
    if load.get("handler"):
        MAX_LOG_CHARS = int(load["max_log_bytes"])
        os.environ.update(FAAS_HANDLER=load["handler"], FAAS_PATH=load["path"], FAAS_MAX_LOG_BYTES=str(MAX_LOG_CHARS))
        main(stdin, server)
        return
    if server is not None:  # a command: the agent's connection ends unaccepted
        server.close()
        try:
            os.unlink(socket_path)
        except FileNotFoundError:  # the agent removed the directory first
            pass
    argv = faas_fork.python_command(load["run"]) if load.get("run") else None
    if argv is not None:
        faas_fork.fork_run(argv, load["path"], load["nonce"])
        return
    r, w = os.pipe()
    os.write(w, load["nonce"].encode() + b"\n")
    os.close(w)
    if r != 3:
        os.dup2(r, 3)
        os.close(r)
    os.set_inheritable(3, True)
    os.execv("/bin/sh", ["sh", "-c", load["script"]])


if __name__ == "__main__":
    if os.environ.get("FAAS_WARM") == "1":
        warm()
    else:
        main()
