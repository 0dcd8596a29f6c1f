"""The handler-protocol shim: stays running in the container, loads the user's handler once
and serves calls as JSON lines.

    FAAS_HANDLER=module:function  (default main:handler), code in FAAS_PATH (default /app)

Protocol (one JSON object per line):
    shim -> agent  {"kind": "ready"} | {"kind": "init_error", "error": {...}}
    agent -> shim  {"id": "...", "params": <any JSON>}
    shim -> agent  {"id": "...", "ok": true, "result": <JSON>, "logs": "..."}
                   {"id": "...", "ok": false, "error": {"type", "message", "traceback"}, "logs": "..."}

The protocol channel is a private copy of the original stdout; fd 1 is pointed at stderr so
that nothing the function prints (Python, C extensions, subprocesses) can corrupt it. What
the function prints through sys.stdout/sys.stderr during a call is captured as that call's
logs (capped, with a visible marker).
"""

import asyncio
import importlib
import inspect
import io
import json
import os
import sys
import traceback

MAX_LOG_CHARS = int(os.environ.get("FAAS_MAX_LOG_BYTES", str(1 << 20)))
TRUNCATED = "\n[faas: log truncated]\n"


class _CappedLog(io.TextIOBase):
    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.cap = cap
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if self.size < self.cap:
            room = self.cap - self.size
            self.parts.append(s[:room])
            self.size += min(len(s), room)
            if len(s) > room:
                self.truncated = True
        else:
            self.truncated = True
        return len(s)

    def text(self) -> str:
        return "".join(self.parts) + (TRUNCATED if self.truncated else "")


def _error(exc: BaseException) -> dict:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # fd 1 now goes to stderr: stray output never reaches the protocol
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", buffering=1, closefd=False)

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        proto.flush()

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
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        logs = _CappedLog(MAX_LOG_CHARS)
        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = logs
        try:
            result = handler(request.get("params"))
            if inspect.isawaitable(result):
                result = (loop or asyncio.new_event_loop()).run_until_complete(result)
            try:
                payload = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"the result is not JSON-serializable: {exc}") from None
            reply = (
                f'{{"id":{json.dumps(request.get("id"))},"ok":true,"result":{payload},'
                f'"logs":{json.dumps(logs.text(), ensure_ascii=False)}}}'
            )
        except BaseException as exc:  # an application error: report it, stay usable
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = json.dumps(
                {"id": request.get("id"), "ok": False, "error": _error(exc), "logs": logs.text()}, ensure_ascii=False
            )
        finally:
            sys.stdout, sys.stderr = real_out, real_err
        proto.write(reply + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
