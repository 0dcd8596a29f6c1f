"""The gateway's and the store's collectors with fakes: queue depth from consumer info, and
from the stream's subjects for a runtime no agent serves yet; what shows before a first
fetch; callback outcomes from 0."""

from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from nats.js.errors import NotFoundError
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from common.metrics import Cached
from gateway.metrics import GatewayCollector, queue_depths
from schemas import Layout, NodeState
from store.ingest import IngestStats
from store.metrics import Backlog, StoreCollector

LAYOUT = Layout("faas")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(collector: Any) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


class FakeJetStream:
    """consumer_info and stream_info as JetStream answers them, and what was asked."""

    def __init__(self, consumers: dict[str, tuple[int, int]], subjects: dict[str, int]) -> None:
        self.consumers = consumers
        self.subjects = subjects
        self.asked: list[str] = []

    async def consumer_info(self, stream: str, consumer: str, timeout: float | None = None) -> Any:
        self.asked.append(f"consumer:{consumer}")
        if consumer not in self.consumers:
            raise NotFoundError
        pending, unacked = self.consumers[consumer]
        return SimpleNamespace(num_pending=pending, num_ack_pending=unacked)

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> Any:
        self.asked.append(f"stream:{subjects_filter}")
        return SimpleNamespace(state=SimpleNamespace(subjects=self.subjects))


async def test_queue_depth_per_runtime_and_node_from_their_consumers() -> None:
    js = FakeJetStream(
        {"rt_python": (4, 2), "node_n1": (1, 0)},
        {"faas.invoke.rt.node": 3, "faas.invoke.rt.python": 6},
    )

    async def runtimes() -> list[str]:
        return ["node", "python", "empty"]

    queues = queue_depths(js, LAYOUT, runtimes, lambda: ["n1", "gone"])  # type: ignore[arg-type]
    fresh = NodeState(node_id="n1", policy="adaptive", slots=4, free=4)
    stale = NodeState(node_id="n2", policy="adaptive", slots=4, free=4, at=datetime(2020, 1, 1, tzinfo=UTC))
    outcomes: Counter[str] = Counter({"delivered": 2})
    collector = GatewayCollector(queues, lambda: [(fresh, True), (stale, False)], lambda: outcomes)

    before = scrape(collector)  # nothing fetched yet: no queue figures, the rest as it is
    assert not [k for k in before if k[0].startswith("faas_queue")]
    assert before[("faas_nodes", (("state", "fresh"),))] == 1
    assert before[("faas_nodes", (("state", "stale"),))] == 1
    assert before[("faas_callbacks_total", (("outcome", "delivered"),))] == 2
    assert before[("faas_callbacks_total", (("outcome", "refused"),))] == 0

    await queues.get()
    s = scrape(collector)
    assert s[("faas_queue_depth", (("runtime", "python"),))] == 4  # the consumer's, not the subject's
    assert s[("faas_queue_in_flight", (("runtime", "python"),))] == 2
    assert s[("faas_queue_depth", (("runtime", "node"),))] == 3  # no consumer yet: its subject
    assert s[("faas_queue_depth", (("runtime", "empty"),))] == 0
    assert ("faas_queue_in_flight", (("runtime", "node"),)) not in s
    assert s[("faas_node_queue_depth", (("node", "n1"),))] == 1
    assert ("faas_node_queue_depth", (("node", "gone"),)) not in s
    # one stream lookup for all the runtimes without a consumer
    assert js.asked.count("stream:faas.invoke.rt.*") == 1


async def test_callbacks_off_show_no_callback_outcomes() -> None:
    async def runtimes() -> list[str]:
        return []

    queues = queue_depths(FakeJetStream({}, {}), LAYOUT, runtimes, list)  # type: ignore[arg-type]
    s = scrape(GatewayCollector(queues, list, lambda: None))
    assert not [k for k in s if k[0] == "faas_callbacks_total"]


async def test_the_store_collector_reads_its_counters_and_the_last_fetches() -> None:
    stats = IngestStats()
    stats.record_acks(7)
    stats.batches, stats.dead_letters, stats.retries = 2, 1, 3
    answers = [Backlog(5, 2, 1.5)]

    async def backlog() -> Backlog:
        return answers[0]

    async def jobs() -> dict[str, int]:
        return {"RUNNING": 2, "FINISHED": 9}

    cached_backlog = Cached("b", backlog, ttl_s=0)
    cached_jobs = Cached("j", jobs, ttl_s=0)
    collector = StoreCollector(stats, cached_backlog, cached_jobs)
    s = scrape(collector)
    assert s[("faas_store_events_total", ())] == 7
    assert s[("faas_store_batches_total", ())] == 2
    assert s[("faas_store_dead_letters_total", ())] == 1
    assert s[("faas_store_database_retries_total", ())] == 3
    assert ("faas_store_ingest_pending", ()) not in s  # not fetched yet
    await cached_backlog.get()
    await cached_jobs.get()
    s = scrape(collector)
    assert s[("faas_store_ingest_pending", ())] == 5
    assert s[("faas_store_ingest_unacked", ())] == 2
    assert s[("faas_store_ingest_lag_seconds", ())] == 1.5
    assert s[("faas_jobs", (("status", "RUNNING"),))] == 2
    assert s[("faas_jobs", (("status", "QUEUED"),))] == 0
