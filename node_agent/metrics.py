"""The node agent's Prometheus metrics (served on ``FAAS_AGENT_METRICS_HOST:_PORT``).

Counted as each call ends (:class:`CallMetrics`, fed the call's ``finished`` event once it
is stored: a labelled increment and one histogram observation, no await, no NATS):

* ``faas_calls_total{function,status,served}``
* ``faas_call_duration_seconds{function}``

Read at scrape time from what the agent keeps anyway (:class:`AgentCollector`): its slots,
the calls running, the warm pools (stem cells per runtime, function containers per
``function@version``), and the containers the engine created, by kind.
"""

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from common.metrics import DURATION_BUCKETS
from node_agent.containers.config import CONTAINER_KINDS
from node_agent.pools.keys import Layer, PoolKey
from schemas import Finished

# How a call that never reached a container (an unknown function, too many attempts) shows.
NOT_SERVED = "none"


class CallMetrics:
    """``faas_calls_total`` and ``faas_call_duration_seconds``, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "faas_calls",
            "Calls this node ended, by function, final status and how each was served (cold, stem, warm; "
            "none: it never reached a container)",
            ["function", "status", "served"],
            registry=registry,
        )
        self.duration = Histogram(
            "faas_call_duration_seconds",
            "Run time of the calls this node ended, from delivery to outcome, by function",
            ["function"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

    def finished(self, event: Finished) -> None:
        """One call ended (its final event is stored)."""
        function = event.function or ""
        self.calls.labels(function, event.status.value, event.served or NOT_SERVED).inc()
        if event.duration_ms is not None:
            self.duration.labels(function).observe(event.duration_ms / 1000)


class Slotted(Protocol):
    size: int

    @property
    def busy(self) -> int: ...


class Pooled(Protocol):
    def counts(self) -> dict[PoolKey, tuple[int, int, int]]: ...


class Starts(Protocol):
    starts_by_kind: Tally[str]


@dataclass(frozen=True)
class AgentView:
    """What the collector reads: the agent's own state (calls/slots.py, pools/pool.py, the
    engine's count of containers created)."""

    node_id: str
    policy: str
    slots: Slotted
    running_calls: Callable[[], int]
    pools: Pooled | None  # None: policy none
    engine: Starts


_STATES = ("idle", "busy", "starting")


class AgentCollector(Collector):
    """The agent's gauges and its container starts, read at scrape time."""

    def __init__(self, view: AgentView) -> None:
        self._view = view

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no fixed description: read at collect time

    def collect(self) -> Iterator[Metric]:
        v = self._view
        info = GaugeMetricFamily("faas_agent_info", "This node agent (always 1)", labels=["node", "policy"])
        info.add_metric([v.node_id, v.policy], 1)
        yield info
        yield GaugeMetricFamily("faas_slots", "Calls and jobs this node runs at once", value=v.slots.size)
        yield GaugeMetricFamily("faas_slots_busy", "Slots taken by a call or a job", value=v.slots.busy)
        yield GaugeMetricFamily("faas_calls_running", "Calls running on this node", value=v.running_calls())
        warm = GaugeMetricFamily(
            "faas_warm_containers",
            "Warm containers by kind (stem: a runtime's stem cells; function: one function version's), "
            "key (the runtime, or function@version) and state (idle, busy with a call, starting)",
            labels=["kind", "key", "state"],
        )
        pools = v.pools.counts() if v.pools is not None else {}
        for key, counts in sorted(pools.items(), key=lambda kv: str(kv[0])):
            kind = "stem" if key.layer is Layer.RUNTIME else "function"
            for state, n in zip(_STATES, counts, strict=True):
                warm.add_metric([kind, key.label, state], n)
        yield warm
        starts = CounterMetricFamily(
            "faas_container_starts",
            "Containers this node created, by kind: cold (a call's own), stem (a stem cell), function "
            "(a function's warm container), deps (a dependency install), job",
            labels=["kind"],
        )
        tally = v.engine.starts_by_kind
        for kind in (*CONTAINER_KINDS, *sorted(set(tally) - set(CONTAINER_KINDS))):
            starts.add_metric([kind], tally.get(kind, 0))
        yield starts
