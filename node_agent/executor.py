"""Runs one call under the node's invocation policy.

* ``none``: a new container per call (cold).
* ``warm-runtime``: an idle started container of the runtime's image receives the code,
  params and entry script on stdin, runs once and is destroyed; the pool refills.
  Functions with dependencies or non-default resource limits run cold (their dependencies
  are in a prebuilt image, see deps.py).
* ``warm-function``: an idle container already holding the function version (and its
  dependencies) receives only the params; with the handler protocol it serves call after
  call, with the command protocol once.

A call for which no warm container is idle falls back to ``none``; the pool grows.
"""

import asyncio
import json
import logging
import time
from collections import Counter
from contextvars import ContextVar
from typing import Protocol

from common.logs import fields
from node_agent.artifacts import ArtifactCache, call_tar
from node_agent.deps import CA_PATH, DependencyImages, ca_env
from node_agent.docker import Attached, ContainerSpec, Engine
from node_agent.errors import AgentError, StreamClosed
from node_agent.logstream import LogPublisher
from node_agent.outcome import (
    Outcome,
    error_outcome,
    exit_error,
    parse_result,
    timeout_outcome,
)
from node_agent.pools import Pools, WarmContainer
from node_agent.scripts import WARM_COMMAND_CMD, WARM_RUNTIME_CMD, entry_script
from node_agent.session import (
    HandlerInitError,
    HandlerSession,
    OnLog,
    OutputTooLarge,
    SessionClosed,
    error_info,
    read_until_exit,
)
from schemas import CallStatus, ErrorInfo, FunctionRecord, Invocation, Limits, RuntimeSpec, encode_json, function_key

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()
READY_TIMEOUT_S = 60.0


# Where the running call's output lines go (a LogPublisher's write): one call per task, so
# a context variable carries it to the session code without threading it through every path.
_CALL_LOG: ContextVar[OnLog | None] = ContextVar("faas_call_log", default=None)


class RuntimeLookup(Protocol):
    async def runtime(self, name: str) -> RuntimeSpec: ...


class ParamsTooLarge(AgentError):
    kind = "ParamsTooLarge"


def warm_runtime_eligible(function: FunctionRecord) -> bool:
    lim = function.limits
    return not function.has_dependencies and (lim.memory_mb, lim.cpus, lim.pids, lim.network) == (
        DEFAULT_LIMITS.memory_mb,
        DEFAULT_LIMITS.cpus,
        DEFAULT_LIMITS.pids,
        DEFAULT_LIMITS.network,
    )


class Executor:
    def __init__(
        self,
        engine: Engine,
        artifacts: ArtifactCache,
        deps: DependencyImages,
        node_id: str,
        policy: str,
        ca_bundle: str | None,
        pools: Pools | None = None,
        runtimes: "RuntimeLookup | None" = None,
    ) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self.deps = deps
        self.node_id = node_id
        self.policy = policy
        self.ca_bundle = ca_bundle
        self.pools = pools
        self._runtimes = runtimes
        # calls served per path ("cold", "warm-runtime", "warm-function"): metrics, tests
        self.served: Counter[str] = Counter()
        # what each pool key is made of (the latest runtime/function seen for it)
        self._specs: dict[str, tuple[RuntimeSpec, FunctionRecord | None]] = {}

    # --- entry point ----------------------------------------------------------------
    async def run(
        self,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        inv: Invocation,
        call_id: str,
        logs: "LogPublisher | None" = None,
    ) -> Outcome:
        """Run the call; its output lines go to ``logs`` (live on cold command calls, at the
        end of the call on the others, where the container hands them over in one piece)."""
        token = _CALL_LOG.set(logs.write if logs is not None else None)
        try:
            out = await self._run(runtime, function, inv, call_id, logs)
        finally:
            _CALL_LOG.reset(token)
        if logs is not None and out.logs and not out.logs_published:
            await logs.write(1 if function.handler else 2, out.logs.encode())
        return out

    async def _run(
        self, runtime: RuntimeSpec, function: FunctionRecord, inv: Invocation, call_id: str, logs: "LogPublisher | None"
    ) -> Outcome:
        limits = function.limits
        timeout = min(inv.timeout_s or limits.timeout_s, limits.timeout_s)
        params_json = encode_json(inv.params)
        if len(params_json) > limits.params_bytes:
            return error_outcome(ParamsTooLarge(f"params are {len(params_json)} bytes, over {limits.params_bytes}"))
        if function.handler and not runtime.handler_command:
            return error_outcome(AgentError(f"runtime {runtime.name!r} has no handler_command for handlers"))
        key = self._pool_key(runtime, function)
        if key is not None and self.pools is not None:
            self._specs[key] = (runtime, function if key.startswith("fn:") else None)
            wc = self.pools.acquire(key)
            if wc is not None:
                self.served["warm-runtime" if key.startswith("rt:") else "warm-function"] += 1
                return await self._run_warm(wc, runtime, function, call_id, params_json, timeout)
        self.served["cold"] += 1
        return await self._run_cold(runtime, function, call_id, params_json, timeout, logs)

    def _pool_key(self, runtime: RuntimeSpec, function: FunctionRecord) -> str | None:
        if self.policy == "warm-function":
            return "fn:" + function_key(function.name, function.version)
        if self.policy == "warm-runtime" and warm_runtime_eligible(function):
            return "rt:" + runtime.name
        return None

    # --- containers -----------------------------------------------------------------
    def _spec(
        self,
        image: str,
        runtime: RuntimeSpec,
        function: FunctionRecord | None,
        cmd: list[str],
        stdin: bool,
        labels: dict[str, str],
    ) -> ContainerSpec:
        lim = function.limits if function else DEFAULT_LIMITS
        return ContainerSpec(
            image=image,
            cmd=cmd,
            env=ca_env(self.ca_bundle),
            workdir=runtime.path,
            labels={"faas.node": self.node_id, **labels},
            memory_mb=lim.memory_mb,
            cpus=lim.cpus,
            pids_limit=lim.pids,
            network=lim.network,
            binds=[f"{self.ca_bundle}:{CA_PATH}:ro"] if self.ca_bundle else [],
            stdin=stdin,
            keep_logs=not stdin,
        )

    async def _image_and_deps(self, runtime: RuntimeSpec, function: FunctionRecord) -> tuple[str, bool]:
        """The image to start from, and whether dependencies still need installing in it."""
        image = await self.deps.image_for(runtime, function)
        return image, False

    # --- cold (policy none, and every fallback) --------------------------------------
    async def _run_cold(
        self,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        logs: "LogPublisher | None" = None,
    ) -> Outcome:
        image, install = await self._image_and_deps(runtime, function)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        files = {"/faas/run.sh": (entry_script(runtime, function, install), 0o755)}
        labels = {"faas.call": call_id, "faas.function": function.name}
        if function.handler:
            spec = self._spec(image, runtime, function, ["sh", "/faas/run.sh"], stdin=True, labels=labels)
        else:
            files["/faas/params.json"] = (params_json, 0o644)
            # Attached (race-free, unlike following the engine's log) when lines go out live.
            live = logs is not None
            spec = self._spec(image, runtime, function, ["sh", "/faas/run.sh"], stdin=live, labels=labels)
        cid = await self.engine.create(spec)
        try:
            await self.engine.put_archive(cid, "/", call_tar(code, files))
            if function.handler:
                attached = await self.engine.attach(cid)
                try:
                    await self.engine.start(cid)
                    session = HandlerSession(attached, self._max_line(function), function.limits.log_bytes)
                    return await self._handler_call(session, cid, function, call_id, params_json, timeout, ready=True)
                finally:
                    await attached.close()
            if logs is not None:
                attached = await self.engine.attach(cid)
                try:
                    await self.engine.start(cid)
                    return await self._live_command(cid, attached, function, timeout, logs)
                finally:
                    await attached.close()
            await self.engine.start(cid)
            try:
                exit_code = await asyncio.wait_for(self.engine.wait(cid), timeout)
            except TimeoutError:
                return timeout_outcome(timeout, cid)
            return await self._command_result(cid, function, exit_code)
        finally:
            await asyncio.shield(self.engine.remove(cid))

    async def _command_result(self, cid: str, function: FunctionRecord, exit_code: int) -> Outcome:
        lim = function.limits
        out = await self.engine.output(cid, max(lim.result_bytes, lim.log_bytes))
        logs = out.stderr[: lim.log_bytes].decode("utf-8", errors="replace")
        if len(out.stderr) > lim.log_bytes or out.stderr_truncated:
            logs += f"\n[faas: log truncated at {lim.log_bytes} bytes]"
        if exit_code == 0:
            if len(out.stdout) > lim.result_bytes or out.stdout_truncated:
                return Outcome(
                    status=CallStatus.ERROR,
                    exit_code=0,
                    container=cid,
                    logs=logs,
                    error=ErrorInfo(
                        type="ResultTooLarge", message=f"the result exceeds its limit of {lim.result_bytes} bytes"
                    ),
                )
            return Outcome(
                status=CallStatus.DONE, result=parse_result(out.stdout), exit_code=0, container=cid, logs=logs
            )
        state = await self.engine.exit_state(cid)
        error = exit_error(exit_code, state.oom_killed, out.stderr, lim.memory_mb)
        return Outcome(status=CallStatus.ERROR, error=error, exit_code=exit_code, container=cid, logs=logs)

    async def _live_command(
        self, cid: str, attached: Attached, function: FunctionRecord, timeout: float, logs: "LogPublisher"
    ) -> Outcome:
        """A command-protocol call whose stderr lines are published as they come; stdout is
        the result, kept up to its limit (past it the container is stopped at once)."""
        lim = function.limits

        async def pump() -> bool:
            while (frame := await attached.read()) is not None:
                await logs.write(*frame)
                if logs.stdout_truncated:
                    return False
            return True

        try:
            async with asyncio.timeout(timeout):
                within_limit = await pump()
                if not within_limit:
                    return Outcome(
                        status=CallStatus.ERROR,
                        container=cid,
                        logs_published=True,
                        error=ErrorInfo(
                            type="ResultTooLarge", message=f"the result exceeds its limit of {lim.result_bytes} bytes"
                        ),
                    )
                exit_code = await self.engine.wait(cid)
        except TimeoutError:
            out = timeout_outcome(timeout, cid)
            out.logs_published = True
            return out
        await logs.flush()
        if exit_code == 0:
            return Outcome(
                status=CallStatus.DONE,
                result=parse_result(logs.stdout),
                exit_code=0,
                container=cid,
                logs_published=True,
            )
        state = await self.engine.exit_state(cid)
        error = exit_error(exit_code, state.oom_killed, logs.stderr_tail, lim.memory_mb)
        return Outcome(status=CallStatus.ERROR, error=error, exit_code=exit_code, container=cid, logs_published=True)

    def _max_line(self, function: FunctionRecord) -> int:
        # a reply line: the result, the captured logs (JSON-escaped, so up to 6x), framing
        return function.limits.result_bytes + 6 * function.limits.log_bytes + 4096

    async def _handler_call(
        self,
        session: HandlerSession,
        cid: str,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        ready: bool,
    ) -> Outcome:
        """One call over the handler protocol. Raises nothing: every way it can end is an Outcome;
        ``Outcome.warm == "unhealthy"`` tells a pool to destroy the container."""
        try:
            async with asyncio.timeout(timeout):
                if ready:
                    await session.ready()
                reply = await session.call(call_id, params_json, on_log=_CALL_LOG.get())
        except TimeoutError:
            out = timeout_outcome(timeout, cid)
            out.warm = "unhealthy"
            return out
        except HandlerInitError as err:
            return Outcome(status=CallStatus.ERROR, error=error_info(err.error), container=cid, warm="unhealthy")
        except SessionClosed:
            state = await self.engine.exit_state(cid)
            error = exit_error(state.code, state.oom_killed, bytes(session.streams.stderr), function.limits.memory_mb)
            return Outcome(
                status=CallStatus.ERROR,
                error=error,
                exit_code=state.code,
                container=cid,
                warm="unhealthy",
                logs=session.streams.stderr.decode("utf-8", errors="replace"),
            )
        except StreamClosed:
            raise  # nothing reached the function: the caller runs the call elsewhere
        except AgentError as err:
            out = error_outcome(err, cid)
            out.warm = "unhealthy"
            return out
        if reply.ok:
            size = len(json.dumps(reply.result, ensure_ascii=False).encode())
            if size > function.limits.result_bytes:
                return Outcome(
                    status=CallStatus.ERROR,
                    container=cid,
                    logs=reply.logs,
                    error=ErrorInfo(
                        type="ResultTooLarge",
                        message=f"the result exceeds its limit of {function.limits.result_bytes} bytes",
                    ),
                )
            return Outcome(status=CallStatus.DONE, result=reply.result, container=cid, logs=reply.logs)
        assert reply.error is not None
        return Outcome(status=CallStatus.ERROR, error=error_info(reply.error), container=cid, logs=reply.logs)

    # --- warm -----------------------------------------------------------------------
    async def _run_warm(
        self,
        wc: WarmContainer,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        logs: "LogPublisher | None" = None,
    ) -> Outcome:
        assert self.pools is not None
        t0 = time.monotonic()
        out = Outcome(status=CallStatus.ERROR, warm="unhealthy")
        try:
            if wc.key.startswith("rt:"):
                out = await self._on_warm_runtime(wc, runtime, function, call_id, params_json, timeout)
                out.warm = out.warm or "warm-runtime"
            elif wc.session is not None:
                out = await self._handler_call(wc.session, wc.cid, function, call_id, params_json, timeout, ready=False)
                out.warm = out.warm or "warm-function"
            else:
                out = await self._on_warm_command(wc, function, params_json, timeout)
                out.warm = out.warm or "warm-function"
            return out
        except StreamClosed as err:
            # The warm container died while idle: discard it, run the call cold instead.
            log.warning("pool.dead_container", extra=fields(key=wc.key, container=wc.cid[:12], error=str(err)))
            self.served["cold"] += 1
            return await self._run_cold(runtime, function, call_id, params_json, timeout)
        finally:
            self.pools.release(wc, healthy=out.warm not in ("unhealthy", None), service_s=time.monotonic() - t0)

    async def _on_warm_command(
        self, wc: WarmContainer, function: FunctionRecord, params_json: bytes, timeout: float
    ) -> Outcome:
        await wc.attached.write(params_json + b"\n")
        return await self._finish_attached(wc, function, timeout)

    async def _on_warm_runtime(
        self,
        wc: WarmContainer,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
    ) -> Outcome:
        code = await self.artifacts.code_body(function.digest, runtime.path)
        files = {
            "/faas/run.sh": (entry_script(runtime, function, install_deps=False), 0o755),
            "/faas/params.json": (params_json, 0o644),
        }
        tar = call_tar(code, files)
        await wc.attached.write(f"{len(tar)}\n".encode() + tar)
        if function.handler:
            session = HandlerSession(wc.attached, self._max_line(function), function.limits.log_bytes)
            return await self._handler_call(session, wc.cid, function, call_id, params_json, timeout, ready=True)
        return await self._finish_attached(wc, function, timeout)

    async def _finish_attached(self, wc: WarmContainer, function: FunctionRecord, timeout: float) -> Outcome:
        lim = function.limits
        try:
            async with asyncio.timeout(timeout):
                streams = await read_until_exit(wc.attached, lim.result_bytes, lim.log_bytes, _CALL_LOG.get())
                exit_code = await self.engine.wait(wc.cid)
        except TimeoutError:
            return timeout_outcome(timeout, wc.cid)
        except OutputTooLarge as err:
            return error_outcome(err, wc.cid)
        streamed = _CALL_LOG.get() is not None  # the lines already went out as they came
        logs = "" if streamed else streams.stderr.decode("utf-8", errors="replace")
        if streams.stderr_truncated and not streamed:
            logs += f"\n[faas: log truncated at {lim.log_bytes} bytes]"
        if exit_code == 0:
            return Outcome(
                status=CallStatus.DONE,
                result=parse_result(bytes(streams.stdout)),
                exit_code=0,
                container=wc.cid,
                logs=logs,
                warm="used",
            )
        state = await self.engine.exit_state(wc.cid)
        error = exit_error(exit_code, state.oom_killed, bytes(streams.stderr), lim.memory_mb)
        return Outcome(status=CallStatus.ERROR, error=error, exit_code=exit_code, container=wc.cid, logs=logs)

    # --- pool factory ---------------------------------------------------------------
    async def make_warm(self, key: str) -> WarmContainer:
        """Create, start and prepare one idle container for a pool key."""
        if key not in self._specs and key.startswith("rt:") and self._runtimes is not None:
            # a minimum pool is filled before any call has shown us the runtime
            self._specs[key] = (await self._runtimes.runtime(key[3:]), None)
        runtime, function = self._specs[key]
        labels = {"faas.pool": key.replace("@", "_").replace(":", "_")}
        if function is None:  # warm-runtime: the runtime image, waiting for a payload
            spec = self._spec(runtime.image, runtime, None, WARM_RUNTIME_CMD, stdin=True, labels=labels)
            return await self._start_warm(spec, key, reusable=False, files=None, function=None)
        image, install = await self._image_and_deps(runtime, function)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        files = {"/faas/run.sh": (entry_script(runtime, function, install), 0o755)}
        if function.handler:
            spec = self._spec(image, runtime, function, ["sh", "/faas/run.sh"], stdin=True, labels=labels)
            return await self._start_warm(spec, key, reusable=True, files=call_tar(code, files), function=function)
        spec = self._spec(image, runtime, function, WARM_COMMAND_CMD, stdin=True, labels=labels)
        return await self._start_warm(spec, key, reusable=False, files=call_tar(code, files), function=function)

    async def _start_warm(
        self, spec: ContainerSpec, key: str, reusable: bool, files: bytes | None, function: FunctionRecord | None
    ) -> WarmContainer:
        cid = await self.engine.create(spec)
        attached: Attached | None = None
        try:
            if files is not None:
                await self.engine.put_archive(cid, "/", files)
            attached = await self.engine.attach(cid)
            await self.engine.start(cid)
            wc = WarmContainer(cid=cid, key=key, attached=attached, reusable=reusable)
            if reusable and function is not None:
                wc.session = HandlerSession(attached, self._max_line(function), function.limits.log_bytes)
                await asyncio.wait_for(wc.session.ready(), READY_TIMEOUT_S)
            return wc
        except BaseException:
            if attached is not None:
                await asyncio.shield(attached.close())
            await asyncio.shield(self.engine.remove(cid))
            raise
