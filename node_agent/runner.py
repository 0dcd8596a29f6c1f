"""Runs one call with the *none* policy and the command protocol: a new container per call.

create (with limits) -> copy code + params + entry script -> start -> wait (bounded by the
timeout) -> read stdout (the result) and stderr (the logs) -> remove.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from common.logs import fields
from node_agent.artifacts import ArtifactCache, call_tar
from node_agent.docker import ContainerSpec, Engine
from node_agent.errors import AgentError
from schemas import CallStatus, ErrorInfo, FunctionRecord, Invocation, RuntimeSpec, encode_json
from schemas.codec import InvalidMessage, decode_json

log = logging.getLogger(__name__)

# The entry script is ours, so that installing dependencies and running the function are
# told apart in the exit code; the user's commands come in through the environment.
ENTRY = b"""#!/bin/sh
cd "$FAAS_PATH" || exit 125
if [ -n "$FAAS_DEPENDENCIES" ]; then
  sh -c "$FAAS_DEPENDENCIES" 1>&2 || { echo "faas: dependencies command failed" >&2; exit 213; }
fi
exec sh -c "$FAAS_RUN" < /faas/params.json
"""
DEPS_FAILED = 213
# Params above this size are passed on stdin only: one env string may not exceed 128 KiB.
MAX_ENV_PARAMS = 64 * 1024
STDERR_TAIL = 4096
CA_PATH = "/etc/faas/ca.pem"


@dataclass
class Outcome:
    status: CallStatus
    result: Any = None
    error: ErrorInfo | None = None
    exit_code: int | None = None
    container: str | None = None
    logs: str = ""


@dataclass
class RunContext:
    node_id: str
    call_id: str
    ca_bundle: str | None
    max_result_bytes: int


def _env(runtime: RuntimeSpec, function: FunctionRecord, params_json: bytes, ctx: RunContext) -> dict[str, str]:
    env = {
        "FAAS_PATH": runtime.path,
        "FAAS_RUN": runtime.run,
        "FAAS_DEPENDENCIES": runtime.dependencies if function.has_dependencies else "",
        "FAAS_FUNCTION": function.name,
        "FAAS_VERSION": str(function.version),
        "FAAS_CALL_ID": ctx.call_id,
    }
    if len(params_json) <= MAX_ENV_PARAMS:
        env["FAAS_PARAMS"] = params_json.decode()
    if ctx.ca_bundle:
        env.update(
            PIP_CERT=CA_PATH,
            SSL_CERT_FILE=CA_PATH,
            REQUESTS_CA_BUNDLE=CA_PATH,
            NODE_EXTRA_CA_CERTS=CA_PATH,
            NPM_CONFIG_CAFILE=CA_PATH,
        )
    return env


def parse_result(stdout: bytes) -> Any:
    """stdout is the result: JSON when it parses as JSON, else the text."""
    text = stdout.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        return decode_json(text)
    except InvalidMessage:
        return text


def _tail(data: bytes) -> str:
    return data[-STDERR_TAIL:].decode("utf-8", errors="replace").strip()


async def run_command_call(
    engine: Engine,
    artifacts: ArtifactCache,
    runtime: RuntimeSpec,
    function: FunctionRecord,
    invocation: Invocation,
    ctx: RunContext,
) -> Outcome:
    timeout = min(invocation.timeout_s or function.limits.timeout_s, function.limits.timeout_s)
    params_json = encode_json(invocation.params)
    code = await artifacts.code_body(function.digest, runtime.path)
    tar = call_tar(code, {"/faas/params.json": (params_json, 0o644), "/faas/run.sh": (ENTRY, 0o755)})
    spec = ContainerSpec(
        image=runtime.image,
        cmd=["sh", "/faas/run.sh"],
        env=_env(runtime, function, params_json, ctx),
        workdir=runtime.path,
        labels={"faas.call": ctx.call_id, "faas.node": ctx.node_id, "faas.function": function.name},
        memory_mb=function.limits.memory_mb,
        # Installing dependencies needs the network, whatever the function's own setting.
        network=function.limits.network or function.has_dependencies,
        binds=[f"{ctx.ca_bundle}:{CA_PATH}:ro"] if ctx.ca_bundle else [],
    )
    cid = await engine.create(spec)
    try:
        await engine.put_archive(cid, "/", tar)
        await engine.start(cid)
        try:
            code_ = await asyncio.wait_for(engine.wait(cid), timeout)
        except TimeoutError:
            log.info("call.timeout", extra=fields(call=ctx.call_id, container=cid[:12], timeout_s=timeout))
            return Outcome(
                status=CallStatus.TIMEOUT,
                error=ErrorInfo(type="Timeout", message=f"the call exceeded its timeout of {timeout:g}s"),
                container=cid,
            )
        out = await engine.output(cid, ctx.max_result_bytes)
        logs = out.stderr.decode("utf-8", errors="replace")
        if code_ == 0:
            if out.stdout_truncated:
                return Outcome(
                    status=CallStatus.ERROR,
                    exit_code=0,
                    container=cid,
                    logs=logs,
                    error=ErrorInfo(type="ResultTooLarge", message=f"the result exceeds {ctx.max_result_bytes} bytes"),
                )
            return Outcome(
                status=CallStatus.DONE, result=parse_result(out.stdout), exit_code=0, container=cid, logs=logs
            )
        state = await engine.exit_state(cid)
        if state.oom_killed:
            error = ErrorInfo(
                type="MemoryLimit",
                message=f"the call exceeded its memory limit of {function.limits.memory_mb} MB",
            )
        elif code_ == DEPS_FAILED and b"faas: dependencies command failed" in out.stderr:
            error = ErrorInfo(type="DependenciesFailed", message=f"installing dependencies failed: {_tail(out.stderr)}")
        else:
            error = ErrorInfo(type="NonZeroExit", message=f"exit code {code_}: {_tail(out.stderr)}")
        return Outcome(status=CallStatus.ERROR, error=error, exit_code=code_, container=cid, logs=logs)
    finally:
        # Shielded: a cancelled call (agent stopping) must still not leave its container.
        await asyncio.shield(engine.remove(cid))


def error_outcome(err: AgentError) -> Outcome:
    return Outcome(status=CallStatus.ERROR, error=ErrorInfo(type=err.kind, message=str(err)))


def elapsed_ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
