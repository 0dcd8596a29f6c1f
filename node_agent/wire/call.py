"""One call in a started container whose stdio is attached: the handler protocol (a shim
that answers JSON lines, reusable) and the command protocol (stdout is the result, the
process exits). Every way a call can end becomes an :class:`Outcome`; ``reusable=False``
tells a pool to destroy the container."""

import asyncio
import contextlib
import json

from node_agent.containers.docker import Attached, Engine
from node_agent.errors import AgentError, StreamClosed
from node_agent.outcome import Outcome, error_outcome, exit_error, parse_result, timeout_outcome
from node_agent.wire.endmarker import EndStatus, read_until_end
from node_agent.wire.stdio import (
    HandlerInitError,
    HandlerSession,
    OnCall,
    OnLog,
    OutputTooLarge,
    ProtocolError,
    SessionClosed,
    Streams,
    error_info,
    read_until_exit,
)
from schemas import CallStatus, ErrorInfo, FunctionRecord

OOM_POLLS, OOM_POLL_S = 40, 0.05
# The most a byte of output grows to in JSON (a control character escaped: \u0001).
_JSON_GROWTH = 6


def max_line(function: FunctionRecord) -> int:
    """The longest protocol line: a result, or a log line (JSON-escaped: up to 6x), plus framing."""
    return function.limits.result_bytes + 6 * function.limits.log_bytes + 4096


async def exit_outcome(engine: Engine, cid: str, code: int | None, stderr: bytes, function: FunctionRecord) -> Outcome:
    """A non-zero exit as an error. A SIGKILL (137) is checked for the memory limit for up to
    2 s: Docker may handle the exit before the OOM event that caused it (by more than half a
    second on a loaded machine: a fresh-clone CI run saw "Killed" for an OOM kill)."""
    state = await engine.exit_state(cid)
    for _ in range(OOM_POLLS):
        if state.code != 137 or state.oom_killed:
            break
        await asyncio.sleep(OOM_POLL_S)
        state = await engine.exit_state(cid)
    exit_code = state.code if code is None else code
    error = exit_error(exit_code, state.oom_killed, stderr, function.limits.memory_mb)
    return Outcome(status=CallStatus.ERROR, error=error, exit_code=exit_code, container=cid, reusable=False)


def too_large(function: FunctionRecord, cid: str) -> Outcome:
    limit = function.limits.result_bytes
    return Outcome(
        status=CallStatus.ERROR,
        container=cid,
        error=ErrorInfo(type="ResultTooLarge", message=f"the result exceeds its limit of {limit} bytes"),
    )


async def handler_call(
    engine: Engine,
    session: HandlerSession,
    cid: str,
    function: FunctionRecord,
    call_id: str,
    params_json: bytes,
    timeout: float,
    ready: bool,
    on_log: OnLog | None,
    on_call: OnCall | None = None,
) -> Outcome:
    """One call over the handler protocol (waiting for the shim's hello first if ``ready``).
    Raises only :class:`StreamClosed`: nothing reached the function, it may run elsewhere."""
    try:
        async with asyncio.timeout(timeout):
            if ready:
                await session.ready()
            reply = await session.call(call_id, params_json, on_log=on_log, on_call=on_call)
    except TimeoutError:
        return timeout_outcome(timeout, cid, reusable=False)
    except HandlerInitError as err:
        return Outcome(status=CallStatus.ERROR, error=error_info(err.error), container=cid, reusable=False)
    except SessionClosed:
        # The stream ended: the process is exiting (bounded, in case only the stream broke).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.wait(cid), 5.0)
        return await exit_outcome(engine, cid, None, bytes(session.streams.stderr), function)
    except StreamClosed:
        raise
    except AgentError as err:
        return error_outcome(err, cid, reusable=False)
    if not reply.ok:
        # An application error: the container stays in service.
        assert reply.error is not None
        return Outcome(status=CallStatus.ERROR, error=error_info(reply.error), container=cid)
    limit = function.limits.result_bytes
    # The reply line holds the result: only a line longer than the limit needs measuring.
    if session.reply_bytes > limit and json_size(reply.result) > limit:
        return too_large(function, cid)
    return Outcome(status=CallStatus.DONE, result=reply.result, container=cid)


async def command_call(
    engine: Engine,
    attached: Attached,
    cid: str,
    function: FunctionRecord,
    timeout: float,
    on_log: OnLog | None,
    nonce: str | None = None,
) -> Outcome:
    """The command protocol on a started container: stdout (up to the result limit; past it
    the call ends at once) is the result, stderr goes to ``on_log`` as it comes.

    With a ``nonce`` the container frames the command's end on its streams (wire/endmarker.py):
    the call ends there, without waiting for the container to exit. Without one, or if the
    container's process dies before its marker, the call ends when Docker reports the exit."""
    lim = function.limits
    status: EndStatus | None = None
    exit_code = -1
    try:
        async with asyncio.timeout(timeout):
            if nonce is not None:
                streams, status = await read_until_end(attached, nonce, lim.result_bytes, lim.log_bytes, on_log)
            else:
                streams = await read_until_exit(attached, lim.result_bytes, lim.log_bytes, on_log)
            if status is None:
                exit_code = await engine.wait(cid)
    except TimeoutError:
        return timeout_outcome(timeout, cid)
    except OutputTooLarge:
        return too_large(function, cid)
    except ProtocolError as err:
        return error_outcome(err, cid, reusable=False)
    if status is not None:
        if status.exit_code == 0:
            return done(streams, cid, function)
        error = exit_error(status.exit_code, status.oom_kills > 0, bytes(streams.stderr), lim.memory_mb)
        return Outcome(status=CallStatus.ERROR, error=error, exit_code=status.exit_code, container=cid, reusable=False)
    if exit_code == 0:
        return done(streams, cid, function)
    return await exit_outcome(engine, cid, exit_code, bytes(streams.stderr), function)


def done(streams: Streams, cid: str, function: FunctionRecord) -> Outcome:
    """stdout as the result. The limit holds for the result as the record keeps it, in JSON,
    where text may grow (a control byte is 6 bytes escaped, an invalid UTF-8 byte 3): only
    output that could grow past the limit is measured."""
    result = parse_result(bytes(streams.stdout))
    limit = function.limits.result_bytes
    if len(streams.stdout) * _JSON_GROWTH > limit and json_size(result) > limit:
        return too_large(function, cid)
    return Outcome(status=CallStatus.DONE, result=result, exit_code=0, container=cid)


def json_size(value: object) -> int:
    """Bytes of ``value`` as JSON (a lone surrogate counted as the 3 bytes it is replaced by)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
