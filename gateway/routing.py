"""Routing calls to nodes that hold them warm.

Node agents put their state (free slots, idle warm containers per function version and per
runtime) in the nodes KV bucket every few seconds. The router follows the bucket and, for a
call, prefers a fresh node with an idle warm container of that function version, then one
with an idle container of its runtime, and otherwise leaves the call on the runtime's shared
subject. A routed call whose node then dies is moved back by the surviving agents.

A heartbeat is a few seconds old at best, so each call routed to a node claims one of the
idle containers (and one of the free slots) it advertised, until its next heartbeat says
anew what it holds; a synchronous call gives its claim back when it is answered (the
container is idle again). A burst is therefore sent to a node only as far as it said it can
take it at once; the rest goes to the shared subject, where every node serving the runtime
pulls: a burst spreads over the nodes instead of queueing on the one that held the function.
"""

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js.kv import KeyValue

from common.kvwatch import follow
from common.logs import fields
from schemas import InvalidMessage, JobMaxima, JobSpec, Layout, NodeState, decode, function_key, over_maxima

log = logging.getLogger(__name__)


# A claim's key for a node's free slots (not a function key nor a runtime name: no "@", and
# runtime names cannot be empty).
_SLOTS = ""


@dataclass(frozen=True)
class Claim:
    """A call routed to a node: the idle container (``key``) and slot it was counted against."""

    node: str
    key: str


class NodeRouter:
    def __init__(self, nodes: KeyValue, layout: Layout, fresh_s: float = 6.0) -> None:
        self._kv = nodes
        self._layout = layout
        self._fresh_s = fresh_s
        self._nodes: dict[str, NodeState] = {}
        # per node: what the calls routed to it since its last heartbeat took of it
        self._claims: dict[str, Counter[str]] = {}
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
        self._claims.pop(entry.key, None)  # what it holds now, said anew
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

    def route(self, function: str, version: int, runtime: str) -> tuple[str, Claim | None]:
        """The subject for a call, and what it claims of the node it is routed to (None: the
        runtime's shared subject). Give a claim back with :meth:`release` once the call is
        known to have ended before the node's next heartbeat."""
        now = datetime.now(UTC)
        live = [
            n
            for n in self._nodes.values()
            if n.free - self._taken(n.node_id, _SLOTS) > 0 and (now - n.at).total_seconds() < self._fresh_s
        ]
        key = function_key(function, version)
        for pick_key, held in (
            (key, {n.node_id: n.warm_functions.get(key, 0) for n in live}),
            (runtime, {n.node_id: n.warm_runtimes.get(runtime, 0) for n in live}),
        ):
            idle = {node: count - self._taken(node, pick_key) for node, count in held.items()}
            best = max(idle.values(), default=0)
            if best > 0:
                # the most idle warm containers first; ties spread round-robin
                top = sorted(node for node, count in idle.items() if count == best)
                self._rr += 1
                node = top[self._rr % len(top)]
                taken = self._claims.setdefault(node, Counter())
                taken[pick_key] += 1
                taken[_SLOTS] += 1
                return self._layout.invoke_node(node), Claim(node, pick_key)
        return self._layout.invoke_runtime(runtime), None

    def release(self, claim: Claim | None) -> None:
        """A routed call ended (its container and slot are free again), unless the node's
        heartbeat since then said so already."""
        taken = self._claims.get(claim.node) if claim is not None else None
        if claim is None or taken is None:
            return
        for k in (claim.key, _SLOTS):
            if taken[k] > 0:
                taken[k] -= 1

    def _taken(self, node: str, key: str) -> int:
        taken = self._claims.get(node)
        return taken[key] if taken is not None else 0
