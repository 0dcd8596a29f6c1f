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

* ``adaptive``: the layers together. A call goes to an idle container of its own function
  (``warm``), else to a stem cell of its runtime (``stem``: as warm-runtime), else runs
  cold. When the function's own containers are all busy, the call waits for one of them
  while that is quicker than what a stem cell would add (so a saturated function does not
  use up stem cells, each to be made again, for a wait of a few milliseconds). A stem cell
  whose shim loaded a handler in-process is promoted to the function's warm container after
  the call (no second start); a function gets a pool of its own once it has repeat demand
  (pools/pool.py).

Each outcome says how the call was served (``cold``, ``stem``, ``warm``); the call's
``finished`` event and record carry it.

A call for which no warm container is idle falls back to ``none``; the pool grows. Every
call container is attached before it starts: its output is read from that stream (never
from the engine's log, which can miss a short-lived container's output).
"""

import asyncio
import logging
import time
from collections import Counter

from common.logs import fields
from node_agent.containers.artifacts import ArtifactCache, call_tar
from node_agent.containers.config import ContainerSpec
from node_agent.containers.deps import DependencyImages
from node_agent.containers.docker import Attached, Engine
from node_agent.containers.scripts import entry_script
from node_agent.containers.spec import RUN, call_spec
from node_agent.errors import AgentError, StreamClosed
from node_agent.outcome import Outcome, error_outcome
from node_agent.pools.keys import Layer, PoolKey, pool_keys, promotable, reusable
from node_agent.pools.pool import Pools
from node_agent.pools.warm import payload
from node_agent.pools.warmcontainer import WarmContainer
from node_agent.wire.call import command_call, handler_call, max_line
from node_agent.wire.stdio import HandlerSession, OnCall, OnLog
from schemas import FunctionRecord, Invocation, RuntimeSpec, encode_json

log = logging.getLogger(__name__)


class ParamsTooLarge(AgentError):
    kind = "ParamsTooLarge"


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
    ) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self.deps = deps
        self.node_id = node_id
        self.policy = policy
        self.ca_bundle = ca_bundle
        # warm containers (policies other than none); a call they cannot serve runs cold
        self.pools = pools
        # calls by how they were served ("cold", "stem", "warm"): metrics, tests
        self.served: Counter[str] = Counter()

    # --- entry point ----------------------------------------------------------------
    async def run(
        self,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        inv: Invocation,
        call_id: str,
        on_log: OnLog | None = None,
        on_call: OnCall | None = None,
    ) -> Outcome:
        """Run the call; what it prints (stderr on the command protocol, everything the
        handler prints on the handler protocol) goes to ``on_log`` as it comes, the nested
        calls a handler makes to ``on_call`` (node_agent/nested)."""
        limits = function.limits
        timeout = min(inv.timeout_s or limits.timeout_s, limits.timeout_s)
        params_json = encode_json(inv.params)
        if len(params_json) > limits.params_bytes:
            return error_outcome(ParamsTooLarge(f"params are {len(params_json)} bytes, over {limits.params_bytes}"))
        if function.handler and not runtime.handler_command:
            return error_outcome(AgentError(f"runtime {runtime.name!r} has no handler_command for handlers"))
        if self.pools is not None:
            fn_key, stem_key = pool_keys(self.policy, runtime, function)
            wc = self.pools.acquire(fn_key, stem_backed=stem_key is not None) if fn_key is not None else None
            if wc is None and fn_key is not None and reusable(fn_key, function):
                # A burst past the pool: queue briefly for a busy container of this function
                # while that is quicker than a stem cell (code load, and a new stem cell to
                # make after it) or a cold start (pools/pool.py, "wait").
                stem_s = self.pools.stem_delay(stem_key, fn_key) if stem_key is not None else None
                wc = await self.pools.wait(fn_key, instead_s=stem_s)
            if wc is None and stem_key is not None:
                wc = self.pools.acquire(stem_key)
            if wc is not None:
                return await self._run_warm(wc, runtime, function, call_id, params_json, timeout, on_log, on_call)
        return await self._run_cold(runtime, function, call_id, params_json, timeout, on_log, on_call)

    # --- cold (policy none, and every fallback) --------------------------------------
    async def _run_cold(
        self,
        runtime: RuntimeSpec,
        function: FunctionRecord,
        call_id: str,
        params_json: bytes,
        timeout: float,
        on_log: OnLog | None,
        on_call: OnCall | None = None,
    ) -> Outcome:
        self.served["cold"] += 1
        image = await self.deps.image_for(runtime, function, on_log)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        files = {"/faas/run.sh": (entry_script(runtime, function), 0o755)}
        if not function.handler:
            files["/faas/params.json"] = (params_json, 0o644)
        labels = {"faas.call": call_id, "faas.function": function.name}
        owner = self.artifacts.owner
        spec = call_spec(image, runtime, function, RUN, labels, self.node_id, self.ca_bundle, owner)
        cid = await self._create(spec)
        attached: Attached | None = None
        try:
            await self.engine.put_archive(cid, "/", call_tar(code, files, owner))
            attached = await self.engine.attach(cid)
            await self.engine.start(cid)
            if function.handler:
                session = HandlerSession(attached, max_line(function), function.limits.log_bytes)
                out = await handler_call(
                    self.engine, session, cid, function, call_id, params_json, timeout, True, on_log, on_call
                )
            else:
                out = await command_call(self.engine, attached, cid, function, timeout, on_log)
            out.served = "cold"
            return out
        finally:
            # Shielded: a cancelled call (agent stopping) must still not leave its container.
            if attached is not None:
                await asyncio.shield(attached.close())
            await asyncio.shield(self.engine.remove(cid))

    async def _create(self, spec: ContainerSpec) -> str:
        """``engine.create``; a call cancelled meanwhile (a cancel request, the agent's stop)
        still removes the container Docker goes on to make."""
        making = asyncio.ensure_future(self.engine.create(spec))
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            await asyncio.shield(self._remove_once_made(making))
            raise

    async def _remove_once_made(self, making: "asyncio.Future[str]") -> None:
        try:
            cid = await making
        except Exception:  # nothing was made
            return
        await self.engine.remove(cid)

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
        on_call: OnCall | None = None,
    ) -> Outcome:
        assert self.pools is not None
        t0 = time.monotonic()
        out: Outcome | None = None
        stem = wc.key.layer is Layer.RUNTIME
        promote: HandlerSession | None = None
        try:
            if stem:
                code = await self.artifacts.code_body(function.digest, runtime.path)
                load = payload(wc.shim, runtime, function, code, params_json, self.artifacts.owner)
                await wc.attached.write(load.data)
                nonce = load.nonce
                channel = wc.attached
                if wc.socket is not None:
                    if load.in_process:  # its own shim serves it on the socket the cell connected
                        channel = wc.attached = wc.socket
                        wc.socket.read_stray()
                    else:
                        wc.socket.detach()
                    wc.socket = None
                session = (
                    HandlerSession(channel, max_line(function), function.limits.log_bytes) if load.handler else None
                )
                if load.in_process and promotable(self.policy, function):
                    promote = session
                ready = True
            else:
                session, ready, nonce = wc.session, False, None
                if session is None:  # command protocol: the container waits for one params line
                    await wc.attached.write(params_json + b"\n")
            if session is not None:
                out = await handler_call(
                    self.engine, session, wc.cid, function, call_id, params_json, timeout, ready, on_log, on_call
                )
            else:
                out = await command_call(self.engine, wc.attached, wc.cid, function, timeout, on_log, nonce)
            out.served = "stem" if stem else "warm"
            self.served[out.served] += 1
            return out
        except StreamClosed as err:
            # The warm container died while idle: discard it, run the call cold instead.
            log.warning("pool.dead_container", extra=fields(key=wc.key, container=wc.cid[:12], error=str(err)))
            return await self._run_cold(runtime, function, call_id, params_json, timeout, on_log, on_call)
        finally:
            healthy = out is not None and out.reusable
            service_s = time.monotonic() - t0
            if promote is not None and healthy:
                # The shim serves this function from now on: the stem cell becomes the
                # function's warm container instead of being destroyed.
                self.pools.promote(wc, PoolKey.function(function), promote, service_s)
            else:
                self.pools.release(wc, healthy=healthy, service_s=service_s)
