"""The gateway's Prometheus metrics (``GET /metrics``, gateway/routes/metrics.py).

Queue depth per runtime is measured here, on the invoke stream: the ``num_pending`` of each
runtime's durable consumer (calls waiting for an agent) and its ``num_ack_pending`` (calls
handed to an agent and not yet acked: running). A runtime no agent has served yet has no
consumer: its depth is the count of messages on its subject (the stream's per-subject
state). Work routed to one node waits on that node's consumer (``faas_node_queue_depth``).
The figures come from JetStream at scrape time, at most once per ``QUEUE_TTL_S`` whoever
scrapes, each request bounded by ``FETCH_TIMEOUT_S``; every gateway reports the same
figures (use ``max by (runtime)`` over several).

Callback outcomes are counted by the dispatcher as they are recorded (gateway/callbacks.py);
nodes by freshness come from the gateway's mirror of the heartbeats.
"""

import asyncio
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.metrics import Cached
from schemas import Layout, NodeState

FETCH_TIMEOUT_S = 1.0
QUEUE_TTL_S = 1.5
# What a callback delivery can end as (gateway/callbacks.py), each counted from 0.
CALLBACK_OUTCOMES = ("delivered", "failed", "refused", "gave_up", "abandoned")


@dataclass(frozen=True)
class QueueDepths:
    # runtime -> (waiting, in flight); in flight is None without a consumer
    runtimes: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # node id -> waiting


def queue_depths(
    js: JetStreamContext,
    layout: Layout,
    runtimes: Callable[[], Awaitable[list[str]]],
    nodes: Callable[[], list[str]],
) -> Cached[QueueDepths]:
    """Each runtime's and each known node's consumer on the invoke stream, asked at once."""
    stream = layout.invoke_stream

    async def info(consumer: str) -> tuple[int, int] | None:
        try:
            ci = await js.consumer_info(stream, consumer, timeout=FETCH_TIMEOUT_S)
        except NotFoundError:
            return None
        return ci.num_pending or 0, ci.num_ack_pending or 0

    async def fetch() -> QueueDepths:
        rts, ids = await runtimes(), nodes()
        found = await asyncio.gather(
            *(info(layout.runtime_consumer(rt)) for rt in rts), *(info(layout.node_consumer(n)) for n in ids)
        )
        by_runtime: dict[str, tuple[int, int | None]] = {}
        unserved = [rt for rt, got in zip(rts, found, strict=False) if got is None]
        if unserved:  # no consumer yet: what waits on the runtime's subject
            si = await js.stream_info(stream, subjects_filter=layout.invoke_runtime("*"))
            subjects = si.state.subjects or {}
            by_runtime.update({rt: (subjects.get(layout.invoke_runtime(rt), 0), None) for rt in unserved})
        by_runtime.update({rt: got for rt, got in zip(rts, found, strict=False) if got is not None})
        by_node = {n: got[0] for n, got in zip(ids, found[len(rts) :], strict=True) if got is not None}
        return QueueDepths(by_runtime, by_node)

    return Cached("gateway-queues", fetch, ttl_s=QUEUE_TTL_S, timeout_s=FETCH_TIMEOUT_S * 2)


class GatewayCollector(Collector):
    def __init__(
        self,
        queues: Cached[QueueDepths],
        nodes: Callable[[], list[tuple[NodeState, bool]]],
        callbacks: Callable[[], Tally[str] | None],
    ) -> None:
        self._queues = queues
        self._nodes = nodes
        self._callbacks = callbacks

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: read at collect time

    def collect(self) -> Iterator[Metric]:
        depths = self._queues.value
        if depths is not None:
            waiting = GaugeMetricFamily(
                "faas_queue_depth",
                "Calls waiting for an agent, by runtime (its consumer's num_pending)",
                labels=["runtime"],
            )
            flight = GaugeMetricFamily(
                "faas_queue_in_flight",
                "Calls handed to an agent and not yet acked, by runtime (num_ack_pending)",
                labels=["runtime"],
            )
            for rt, (pending, unacked) in sorted(depths.runtimes.items()):
                waiting.add_metric([rt], pending)
                if unacked is not None:
                    flight.add_metric([rt], unacked)
            node_q = GaugeMetricFamily(
                "faas_node_queue_depth", "Calls routed to a node and waiting for it, by node", labels=["node"]
            )
            for node, pending in sorted(depths.nodes.items()):
                node_q.add_metric([node], pending)
            yield from (waiting, flight, node_q)
        nodes = GaugeMetricFamily(
            "faas_nodes", "Node agents with a heartbeat, by freshness (fresh ones get routed work)", labels=["state"]
        )
        heard = self._nodes()
        fresh = sum(1 for _, ok in heard if ok)
        nodes.add_metric(["fresh"], fresh)
        nodes.add_metric(["stale"], len(heard) - fresh)
        yield nodes
        outcomes = self._callbacks()
        if outcomes is not None:
            cb = CounterMetricFamily(
                "faas_callbacks",
                "Callback deliveries this gateway ended, by outcome: delivered (2xx), failed (retries ran out), "
                "refused (the address is not allowed), gave_up (too many dispatches), abandoned (not even recorded)",
                labels=["outcome"],
            )
            for outcome in CALLBACK_OUTCOMES:
                cb.add_metric([outcome], outcomes.get(outcome, 0))
            yield cb
