"""Talking to a started container over its attached stdio.

* :class:`HandlerSession`: the handler protocol (see runtimes/python/bootstrap): a shim
  announces ``ready``, then answers one JSON line per call; the container is reusable.
* :func:`read_until_exit`: the command protocol on an attached container: read stdout (the
  result) and stderr (the logs) until the process exits.

Output is read with caps as it arrives, so a function that floods its output costs the
agent no more memory than its limits.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from node_agent.containers.docker import STDERR, STDOUT, Attached
from node_agent.errors import AgentError
from schemas import ErrorInfo


class SessionClosed(AgentError):
    """The container's process exited (crashed, was killed) while we waited for it."""

    kind = "Crashed"


class ProtocolError(AgentError):
    kind = "ProtocolError"


class OutputTooLarge(AgentError):
    kind = "ResultTooLarge"


class HandlerError(BaseModel):
    type: str
    message: str
    traceback: str = ""


class HandlerReply(BaseModel):
    id: Any = None
    ok: bool
    result: Any = None
    error: HandlerError | None = None
    logs: str = ""


class HandlerLog(BaseModel):
    """A line of output the function printed during a call, sent as it happens."""

    kind: str
    stream: str = "stdout"
    text: str = ""


OnLog = Callable[[int, bytes], Awaitable[None]]


class HandlerCall(BaseModel):
    """A nested call the handler makes during its call (``faas.call``): the agent answers
    ``{"kind": "call_result", "ref", "ok", "id", "result" | "error"}`` on the same channel."""

    kind: str
    ref: int
    function: str
    params: Any = None
    # False: fire and forget, the answer carries only the child's call id
    wait: bool = True


class CallResult(BaseModel):
    """The agent's answer to a :class:`HandlerCall`."""

    kind: str = "call_result"
    ref: int
    ok: bool
    id: str | None = None  # the child's call id (None: refused before it was queued)
    result: Any = None
    error: HandlerError | None = None

    def line(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode() + b"\n"


Send = Callable[[bytes], Awaitable[None]]
# Handed each nested call request of a call with how to answer it; must not block.
OnCall = Callable[[HandlerCall, Send], None]


class HandlerHello(BaseModel):
    kind: str
    error: HandlerError | None = None


@dataclass
class Streams:
    """What an attached container wrote, stdout and stderr apart, each capped."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stderr_cap: int = 1 << 20
    stderr_truncated: bool = False

    def add_stderr(self, data: bytes) -> None:
        room = self.stderr_cap - len(self.stderr)
        if room >= len(data):
            self.stderr += data
        else:
            self.stderr += data[: max(room, 0)]
            self.stderr_truncated = True


class HandlerSession:
    def __init__(self, attached: Attached, max_line: int, stderr_cap: int = 1 << 20) -> None:
        self._io = attached
        self._max_line = max_line
        self.streams = Streams(stderr_cap=stderr_cap)
        self._calls = 0
        self._on_log: OnLog | None = None
        # length of the last reply line: the result is no longer than that
        self.reply_bytes = 0
        self._writing = asyncio.Lock()
        self._refusals: set[asyncio.Task[None]] = set()  # a call's nested answers are written from their own tasks

    async def send(self, line: bytes) -> None:
        """One protocol line to the shim (``line`` ends with a newline)."""
        async with self._writing:
            await self._io.write(line)

    async def _read_line(self) -> bytes:
        buf = self.streams.stdout
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                return line
            if len(buf) > self._max_line:
                raise OutputTooLarge(f"the reply exceeds {self._max_line} bytes")
            frame = await self._io.read()
            if frame is None:
                raise SessionClosed("the function's process exited")
            stream, data = frame
            if stream == STDERR:
                self.streams.add_stderr(data)
                if self._on_log is not None:  # raw writes to fd 1/2 (C code, subprocesses)
                    await self._on_log(STDERR, data)
            else:
                buf += data

    async def ready(self) -> None:
        """Wait for the shim to load the handler; an import error is raised as the call's error."""
        line = await self._read_line()
        try:
            hello = HandlerHello.model_validate_json(line)
        except ValidationError:
            raise ProtocolError(f"the handler shim said {line[:200]!r} instead of ready") from None
        if hello.kind == "init_error":
            err = hello.error or HandlerError(type="InitError", message="unknown")
            raise HandlerInitError(err)
        if hello.kind != "ready":
            raise ProtocolError(f"unexpected hello {hello.kind!r}")

    async def call(
        self, call_id: str, params_json: bytes, on_log: OnLog | None = None, on_call: OnCall | None = None
    ) -> HandlerReply:
        """One call; what the function prints meanwhile goes to ``on_log`` line by line, the
        nested calls it makes to ``on_call`` (without one, each is refused)."""
        self._calls += 1
        self._on_log = on_log
        try:
            await self.send(b'{"id":"' + call_id.encode() + b'","params":' + params_json + b"}\n")
            while True:
                line = await self._read_line()
                if line.startswith(b'{"kind":"call"'):
                    self._nested(line, on_call)
                    continue
                if line.startswith(b'{"kind":"log"'):
                    if on_log is not None:
                        try:
                            entry = HandlerLog.model_validate_json(line)
                        except ValidationError:
                            raise ProtocolError(f"bad log line from the handler shim: {line[:200]!r}") from None
                        await on_log(STDERR if entry.stream == "stderr" else STDOUT, entry.text.encode())
                    continue
                self.reply_bytes = len(line)
                try:
                    return HandlerReply.model_validate_json(line)
                except ValidationError as err:
                    raise ProtocolError(f"bad reply from the handler shim: {err.errors()[0]['msg']}") from None
        finally:
            self._on_log = None

    def _nested(self, line: bytes, on_call: OnCall | None) -> None:
        try:
            request = HandlerCall.model_validate_json(line)
        except ValidationError:
            raise ProtocolError(f"bad call line from the handler shim: {line[:200]!r}") from None
        if on_call is not None:
            on_call(request, self.send)
            return
        refusal = HandlerError(type="CallNotAllowed", message="nested calls are not available to this call")
        answer = CallResult(ref=request.ref, ok=False, error=refusal)
        task = asyncio.create_task(self.send(answer.line()), name="session:refuse-call")
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)

    @property
    def calls(self) -> int:
        return self._calls

    async def close(self) -> None:
        await self._io.close()


class HandlerInitError(AgentError):
    kind = "HandlerLoadError"

    def __init__(self, err: HandlerError) -> None:
        super().__init__(f"{err.type}: {err.message}\n{err.traceback}".strip())
        self.error = err


def error_info(err: HandlerError) -> ErrorInfo:
    message = err.message if not err.traceback else f"{err.message}\n{err.traceback}"
    return ErrorInfo(type=err.type, message=message)


async def read_until_exit(attached: Attached, result_cap: int, stderr_cap: int, on_log: OnLog | None = None) -> Streams:
    """Read an attached command's output until it exits; stdout past ``result_cap`` raises
    :class:`OutputTooLarge` at once (the caller destroys the container). stderr goes to
    ``on_log`` as it comes."""
    streams = Streams(stderr_cap=stderr_cap)
    while True:
        frame = await attached.read()
        if frame is None:
            return streams
        stream, data = frame
        if stream == STDERR:
            streams.add_stderr(data)
            if on_log is not None:
                await on_log(STDERR, data)
            continue
        streams.stdout += data
        if len(streams.stdout) > result_cap:
            raise OutputTooLarge(f"the result exceeds its limit of {result_cap} bytes")
