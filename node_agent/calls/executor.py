"""Runs one call under the node's invocation policy.

* ``none``: a new container per call (cold).
* ``warm-runtime``: an idle started container of the runtime's image (a shell, or the
  runtime's shim with its interpreter loaded: pools/warm.py) receives the code and the call on
  stdin, runs once and is destroyed; the pool refills after the call.
  Functions with dependencies or non-default resource limits run cold (their dependencies
  are in a prebuilt image, see containers/deps.py).
* ``warm-function``: an idle container already holding the function version (and its
  dependencies) receives only the params; with the handler protocol it serves call after
  call, with the command protocol once.

A call for which no warm container is idle falls back to ``none``; the pool grows. Every
call container is attached before it starts: its output is read from that stream (never
from the engine's log, which can miss a short-lived container's output).
"""

import asyncio
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Protocol

from common.logs import fields
from node_agent.containers.artifacts import ArtifactCache, call_tar
from node_agent.containers.deps import CA_PATH, DependencyImages, ca_env
from node_agent.containers.docker import Attached, ContainerSpec, Engine
from node_agent.containers.scripts import WARM_COMMAND_CMD, entry_script
from node_agent.errors import AgentError, StreamClosed
from node_agent.outcome import Outcome, error_outcome
from node_agent.pools.pool import Pools, WarmContainer
from node_agent.pools.warm import payload, wait_for_shim, warm_command
from node_agent.wire.call import command_call, handler_call, max_line
from node_agent.wire.socket import MOUNT, SOCKET, SocketChannel, SocketDir
from node_agent.wire.stdio import HandlerSession, OnLog
from schemas import FunctionRecord, Invocation, Limits, RuntimeSpec, encode_json, function_key

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()
READY_TIMEOUT_S = 60.0
# An image whose handler shim serves the protocol on $FAAS_SOCKET says so with this label.
SOCKET_LABEL = "faas.handler-socket"
RUN = ["sh", "/faas/run.sh"]


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


def reusable(key: str, function: FunctionRecord | None) -> bool:
    """Whether a pool container of ``key`` serves call after call: it holds ``function``
    (warm-function) loaded by its handler shim. Every other one serves one call."""
    return key.startswith("fn:") and function is not None and function.handler is not None


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
        runtimes: RuntimeLookup | None = None,
        sockets: SocketDir | None = None,
    ) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self.deps = deps
        self.node_id = node_id
        self.policy = policy
        self.ca_bundle = ca_bundle
        self.pools = pools
        self._runtimes = runtimes
        # warm handler containers whose image says its shim can (SOCKET_LABEL) get the protocol
        # over a Unix socket in a directory of their own (wire/socket.py); None: attached stdio
        self.sockets = sockets
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
        on_log: OnLog | None = None,
    ) -> Outcome:
        """Run the call; what it prints (stderr on the command protocol, everything the
        handler prints on the handler protocol) goes to ``on_log`` as it comes."""
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
            if wc is None and reusable(key, function):
                # a burst past the pool: queue briefly for a busy container of this function
                # rather than start one (pools/pool.py, "wait")
                wc = await self.pools.wait(key)
            if wc is not None:
                self.served["warm-runtime" if key.startswith("rt:") else "warm-function"] += 1
                return await self._run_warm(wc, runtime, function, call_id, params_json, timeout, on_log)
        self.served["cold"] += 1
        return await self._run_cold(runtime, function, call_id, params_json, timeout, on_log)

    def _pool_key(self, runtime: RuntimeSpec, function: FunctionRecord) -> str | None:
        if self.policy == "warm-function":
            return "fn:" + function_key(function.name, function.version)
        if self.policy == "warm-runtime" and warm_runtime_eligible(function):
            return "rt:" + runtime.name
        return None

    def _spec(
        self, image: str, runtime: RuntimeSpec, function: FunctionRecord | None, cmd: list[str], labels: dict[str, str]
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
            stdin=True,
            keep_logs=False,
        )

    # --- cold (policy none, and every fallback) --------------------------------------
    async def _run_cold(
        self,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        on_log: OnLog | None,
    ) -> Outcome:
        image = await self.deps.image_for(runtime, function)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        files = {"/faas/run.sh": (entry_script(runtime, function), 0o755)}
        if not function.handler:
            files["/faas/params.json"] = (params_json, 0o644)
        labels = {"faas.call": call_id, "faas.function": function.name}
        cid = await self.engine.create(self._spec(image, runtime, function, RUN, labels))
        attached: Attached | None = None
        try:
            await self.engine.put_archive(cid, "/", call_tar(code, files))
            attached = await self.engine.attach(cid)
            await self.engine.start(cid)
            if function.handler:
                session = HandlerSession(attached, max_line(function), function.limits.log_bytes)
                return await handler_call(
                    self.engine, session, cid, function, call_id, params_json, timeout, True, on_log
                )
            return await command_call(self.engine, attached, cid, function, timeout, on_log)
        finally:
            # Shielded: a cancelled call (agent stopping) must still not leave its container.
            if attached is not None:
                await asyncio.shield(attached.close())
            await asyncio.shield(self.engine.remove(cid))

    # --- warm -----------------------------------------------------------------------
    async def _run_warm(
        self,
        wc: WarmContainer,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        on_log: OnLog | None,
    ) -> Outcome:
        assert self.pools is not None
        t0 = time.monotonic()
        out: Outcome | None = None
        try:
            if wc.key.startswith("rt:"):
                code = await self.artifacts.code_body(function.digest, runtime.path)
                load = payload(wc.shim, runtime, function, code, params_json)
                await wc.attached.write(load.data)
                nonce = load.nonce
                session = (
                    HandlerSession(wc.attached, max_line(function), function.limits.log_bytes) if load.handler else None
                )
                ready = True
            else:
                session, ready, nonce = wc.session, False, None
                if session is None:  # command protocol: the container waits for one params line
                    await wc.attached.write(params_json + b"\n")
            if session is not None:
                out = await handler_call(
                    self.engine, session, wc.cid, function, call_id, params_json, timeout, ready, on_log
                )
            else:
                out = await command_call(self.engine, wc.attached, wc.cid, function, timeout, on_log, nonce)
            return out
        except StreamClosed as err:
            # The warm container died while idle: discard it, run the call cold instead.
            log.warning("pool.dead_container", extra=fields(key=wc.key, container=wc.cid[:12], error=str(err)))
            self.served["cold"] += 1
            return await self._run_cold(runtime, function, call_id, params_json, timeout, on_log)
        finally:
            self.pools.release(wc, healthy=out is not None and out.reusable, service_s=time.monotonic() - t0)

    # --- pool factory ---------------------------------------------------------------
    async def make_warm(self, key: str) -> WarmContainer:
        """Create, start and prepare one idle container for a pool key."""
        if key not in self._specs and key.startswith("rt:") and self._runtimes is not None:
            # a minimum pool is filled before any call has shown us the runtime
            self._specs[key] = (await self._runtimes.runtime(key[3:]), None)
        runtime, function = self._specs[key]
        labels = {"faas.pool": key.replace("@", "_").replace(":", "_")}
        if function is None:  # warm-runtime: the runtime image, waiting for a payload
            cmd, shim = await warm_command(self.engine, runtime)
            spec = self._spec(runtime.image, runtime, None, cmd, labels)
            if shim is not None:
                spec.env["FAAS_WARM"] = "1"
            return await self._start_warm(spec, key, shim=shim)
        image = await self.deps.image_for(runtime, function)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        tar = call_tar(code, {"/faas/run.sh": (entry_script(runtime, function), 0o755)})
        cmd = RUN if function.handler else WARM_COMMAND_CMD
        spec = self._spec(image, runtime, function, cmd, labels)
        socket_dir = None
        if function.handler and self.sockets is not None:
            if (await self.engine.image_labels(image)).get(SOCKET_LABEL) == "1":
                socket_dir = self.sockets.new()
                spec.binds.append(f"{socket_dir}:{MOUNT}")
                spec.env["FAAS_SOCKET"] = SOCKET
        return await self._start_warm(spec, key, tar, function, socket_dir=socket_dir)

    async def _start_warm(
        self,
        spec: ContainerSpec,
        key: str,
        tar: bytes | None = None,
        function: FunctionRecord | None = None,
        shim: str | None = None,
        socket_dir: Path | None = None,
    ) -> WarmContainer:
        """Start a pool container; a handler function's is reusable once its shim is ready,
        a warm-runtime shim's is ready once it waits for a function."""
        try:
            cid = await self.engine.create(spec)
        except BaseException:
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        attached: Attached | None = None
        try:
            if tar is not None:
                await self.engine.put_archive(cid, "/", tar)
            attached = await self.engine.attach(cid)
            if socket_dir is not None:
                attached = SocketChannel(attached, socket_dir)
            await self.engine.start(cid)
            if isinstance(attached, SocketChannel):
                await attached.connect(READY_TIMEOUT_S)
            wc = WarmContainer(cid=cid, key=key, attached=attached, reusable=reusable(key, function), shim=shim)
            if shim is not None:
                await asyncio.wait_for(wait_for_shim(attached), READY_TIMEOUT_S)
            if function is not None and wc.reusable:
                wc.session = HandlerSession(attached, max_line(function), function.limits.log_bytes)
                await asyncio.wait_for(wc.session.ready(), READY_TIMEOUT_S)
            return wc
        except BaseException:
            if attached is not None:
                await asyncio.shield(attached.close())
            if socket_dir is not None and not isinstance(attached, SocketChannel):
                shutil.rmtree(socket_dir, ignore_errors=True)
            await asyncio.shield(self.engine.remove(cid))
            raise
