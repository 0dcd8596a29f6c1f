"""What a call ended as, and how container exits are told apart."""

import time
from dataclasses import dataclass
from typing import Any

from node_agent.errors import AgentError
from schemas import CallStatus, ErrorInfo, Served
from schemas.codec import InvalidMessage, decode_json

# How much of its stderr an error carries (a call's exit error, a job's), and the tail kept for it.
STDERR_TAIL = 4096


@dataclass
class Outcome:
    status: CallStatus
    result: Any = None
    error: ErrorInfo | None = None
    exit_code: int | None = None
    container: str | None = None
    # False: the container must not serve another call (crashed, timed out, out of memory)
    reusable: bool = True
    # How the call was served (the executor sets it): cold, stem or warm
    served: Served | None = None


def parse_result(stdout: bytes) -> Any:
    """stdout is the result: JSON when it parses as JSON, else the text."""
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        return decode_json(text)
    except InvalidMessage:
        return text


def tail(data: bytes) -> str:
    return data[-STDERR_TAIL:].decode("utf-8", errors="replace").strip()


def exit_error(code: int, oom_killed: bool, stderr: bytes, memory_mb: int) -> ErrorInfo:
    if oom_killed:
        return ErrorInfo(type="MemoryLimit", message=f"the call exceeded its memory limit of {memory_mb} MB")
    if code == 137:
        return ErrorInfo(type="Killed", message=f"the process was killed (exit 137): {tail(stderr)}")
    return ErrorInfo(type="NonZeroExit", message=f"exit code {code}: {tail(stderr)}")


def error_outcome(err: AgentError, container: str | None = None, reusable: bool = True) -> Outcome:
    error = ErrorInfo(type=err.kind, message=str(err))
    return Outcome(status=CallStatus.ERROR, error=error, container=container, reusable=reusable)


def timeout_outcome(timeout: float, container: str | None, reusable: bool = False) -> Outcome:
    return Outcome(
        status=CallStatus.TIMEOUT,
        error=ErrorInfo(type="Timeout", message=f"the call exceeded its timeout of {timeout:g}s"),
        container=container,
        reusable=reusable,
    )


def cancelled_outcome(while_running: bool) -> Outcome:
    """A call ended by a cancel request (before it started, or its container stopped)."""
    message = "cancelled while it ran" if while_running else "cancelled before it started"
    return Outcome(status=CallStatus.CANCELLED, error=ErrorInfo(type="Cancelled", message=message), reusable=False)


def elapsed_ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
