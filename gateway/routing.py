"""Routing calls to nodes that hold them warm.

Node agents put their state (free slots, idle warm containers per function version and per
runtime) in the nodes KV bucket every few seconds. The router follows the bucket and, for a
call, prefers a fresh node with an idle warm container of that function version, then one
with an idle container of its runtime, and otherwise leaves the call on the runtime's shared
subject. A routed call whose node then dies is moved back by the surviving agents.
"""

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from common.kvwatch import follow
from common.logs import fields
from schemas import InvalidMessage, JobMaxima, JobSpec, Layout, NodeState, decode, function_key, over_maxima

log = logging.getLogger(__name__)


class NodeRouter:
    def __init__(self, nodes: KeyValue, layout: Layout, fresh_s: float = 6.0) -> None:
        self._kv = nodes
        self._layout = layout
        self._fresh_s = fresh_s
        self._nodes: dict[str, NodeState] = {}
        self._task: asyncio.Task[None] | None = None
        self._rr = 0

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="gateway:node-router")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        await follow(self._kv, self._changed, "nodes")

    async def _changed(self, entry: KeyValue.Entry) -> None:
        if not entry.value:
            self._nodes.pop(entry.key, None)
            return
        try:
            self._nodes[entry.key] = decode(NodeState, entry.value)
        except InvalidMessage:
            log.warning("router.bad_heartbeat", extra=fields(node=entry.key))

    def nodes(self) -> list[tuple[NodeState, bool]]:
        """Every node with a heartbeat in the bucket, by id, each with whether it is fresh
        (heard from within ``fresh_s``: the router sends work only to fresh nodes)."""
        now = datetime.now(UTC)
        return [(n, (now - n.at).total_seconds() < self._fresh_s) for _, n in sorted(self._nodes.items())]

    def job_refusal(self, spec: JobSpec) -> str | None:
        """Why no live node would run ``spec`` (each says the most a job may ask for in its
        heartbeat), or None: one would, or none says (the job waits; its node decides)."""
        now = datetime.now(UTC)
        maxima = [
            n.job_max
            for n in self._nodes.values()
            if n.job_max is not None and (now - n.at).total_seconds() < self._fresh_s
        ]
        if not maxima or any(not over_maxima(spec, m) for m in maxima):
            return None
        largest = JobMaxima(
            memory_mb=max(m.memory_mb for m in maxima),
            cpus=max(m.cpus for m in maxima),
            timeout_s=max(m.timeout_s for m in maxima),
        )
        over = over_maxima(spec, largest)
        if not over:
            return "no node allows memory_mb, cpus and timeout_s as asked all at once"
        return "; ".join(
            f"{name} {value:g} is over every node's maximum (the largest: {most:g})" for name, value, most in over
        )

    def subject_for(self, function: str, version: int, runtime: str) -> str:
        now = datetime.now(UTC)
        live = [n for n in self._nodes.values() if n.free > 0 and (now - n.at).total_seconds() < self._fresh_s]
        key = function_key(function, version)
        for pick in (
            [n for n in live if n.warm_functions.get(key, 0) > 0],
            [n for n in live if n.warm_runtimes.get(runtime, 0) > 0],
        ):
            if pick:
                # the most idle warm containers first; ties spread round-robin
                best = max(n.warm_functions.get(key, 0) + n.warm_runtimes.get(runtime, 0) for n in pick)
                top = [n for n in pick if n.warm_functions.get(key, 0) + n.warm_runtimes.get(runtime, 0) == best]
                self._rr += 1
                return self._layout.invoke_node(top[self._rr % len(top)].node_id)
        return self._layout.invoke_runtime(runtime)
