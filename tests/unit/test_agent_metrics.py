"""The node agent's metrics (node_agent/metrics.py): calls counted from their finished
events, and what the collector reads from slots, pools and the engine at scrape time."""

import asyncio
from collections import Counter

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from node_agent.calls.slots import Slots
from node_agent.containers.config import ContainerSpec, container_kind
from node_agent.metrics import AgentCollector, AgentView, CallMetrics
from node_agent.pools.keys import Layer, PoolKey
from node_agent.pools.pool import Pools
from node_agent.pools.warmcontainer import PoolConfig, WarmContainer
from schemas import CallStatus, ErrorInfo, Finished
from tests.fakes.container import FakeAttached
from tests.fakes.docker import FakeEngine

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def finished(n: int, function: str, status: CallStatus, served: str | None, ms: float | None) -> Finished:
    error = None if status is CallStatus.DONE else ErrorInfo(type="X", message="x")
    return Finished(
        call_id=f"c{n}", number=n, function=function, status=status, served=served, duration_ms=ms, error=error
    )  # type: ignore[arg-type]


def test_calls_are_counted_by_function_status_and_served_with_their_durations() -> None:
    registry = CollectorRegistry()
    m = CallMetrics(registry)
    m.finished(finished(1, "dice", CallStatus.DONE, "cold", 400.0))
    m.finished(finished(2, "dice", CallStatus.DONE, "warm", 2.0))
    m.finished(finished(3, "dice", CallStatus.DONE, "warm", 3.0))
    m.finished(finished(4, "dice", CallStatus.TIMEOUT, "stem", 1500.0))
    m.finished(finished(5, "gone", CallStatus.ERROR, None, None))  # never reached a container
    s = scrape(registry)
    calls = "faas_calls_total"
    assert s[(calls, (("function", "dice"), ("served", "cold"), ("status", "DONE")))] == 1
    assert s[(calls, (("function", "dice"), ("served", "warm"), ("status", "DONE")))] == 2
    assert s[(calls, (("function", "dice"), ("served", "stem"), ("status", "TIMEOUT")))] == 1
    assert s[(calls, (("function", "gone"), ("served", "none"), ("status", "ERROR")))] == 1
    hist = "faas_call_duration_seconds"
    assert s[(hist + "_count", (("function", "dice"),))] == 4
    assert s[(hist + "_sum", (("function", "dice"),))] == (400.0 + 2.0 + 3.0 + 1500.0) / 1000
    assert s[(hist + "_bucket", (("function", "dice"), ("le", "0.005")))] == 2  # the warm ones
    assert s[(hist + "_bucket", (("function", "dice"), ("le", "0.5")))] == 3
    assert (hist + "_count", (("function", "gone"),)) not in s  # no duration: not observed


def test_a_container_kind_is_told_by_its_makers_labels() -> None:
    def kind(**labels: str) -> str:
        return container_kind(ContainerSpec(image="i", cmd=[], labels={"faas.node": "n", **labels}))

    assert kind(**{"faas.call": "c1", "faas.function": "dice"}) == "cold"
    assert kind(**{"faas.pool": "rt_python"}) == "stem"
    assert kind(**{"faas.pool": "fn_dice_3"}) == "function"
    assert kind(**{"faas.build": "dice", "faas.deps": "n"}) == "deps"


async def test_the_collector_reads_slots_pools_and_container_starts_at_scrape_time() -> None:
    engine = FakeEngine(only={"remove"})
    engine.starts_by_kind.update({"cold": 3, "stem": 2})
    fn = PoolKey(Layer.FUNCTION, "dice", 3)
    stem = PoolKey.runtime("python")

    async def factory(key: PoolKey) -> WarmContainer:
        return WarmContainer(cid=f"{key}", key=key, attached=FakeAttached(), reusable=key.layer is Layer.FUNCTION)

    pools = Pools(engine, factory, PoolConfig(min_per_key={stem: 2, fn: 1}))
    slots = Slots(4)
    running = 0
    registry = CollectorRegistry()
    registry.register(AgentCollector(AgentView("n1", "adaptive", slots, lambda: running, pools, engine)))

    s = scrape(registry)
    assert s[("faas_slots", ())] == 4 and s[("faas_slots_busy", ())] == 0
    assert s[("faas_agent_info", (("node", "n1"), ("policy", "adaptive")))] == 1
    assert s[("faas_container_starts_total", (("kind", "cold"),))] == 3
    assert s[("faas_container_starts_total", (("kind", "job"),))] == 0  # every kind, from 0

    for key in (stem, fn):
        pools.want(key)
    pools._tick()  # fills: 2 stem cells and a function container being made
    s = scrape(registry)
    assert s[("faas_warm_containers", (("key", "python"), ("kind", "stem"), ("state", "starting")))] == 2
    assert s[("faas_warm_containers", (("key", "dice@3"), ("kind", "function"), ("state", "starting")))] == 1
    for _ in range(5):
        await asyncio.sleep(0)
    wc = pools.acquire(fn)
    assert wc is not None
    slots.try_acquire()
    running = 1
    engine.starts_by_kind["function"] += 1
    s = scrape(registry)
    assert s[("faas_warm_containers", (("key", "python"), ("kind", "stem"), ("state", "idle")))] == 2
    assert s[("faas_warm_containers", (("key", "dice@3"), ("kind", "function"), ("state", "busy")))] == 1
    assert s[("faas_warm_containers", (("key", "dice@3"), ("kind", "function"), ("state", "idle")))] == 0
    assert s[("faas_slots_busy", ())] == 1 and s[("faas_calls_running", ())] == 1
    assert s[("faas_container_starts_total", (("kind", "function"),))] == 1
    await pools.close()


def test_without_pools_there_are_no_warm_containers() -> None:
    registry = CollectorRegistry()
    engine = FakeEngine(only=set())
    engine.starts_by_kind = Counter({"cold": 1})
    registry.register(AgentCollector(AgentView("n1", "none", Slots(2), lambda: 0, None, engine)))
    s = scrape(registry)
    assert not [k for k in s if k[0] == "faas_warm_containers"]
    assert s[("faas_container_starts_total", (("kind", "cold"),))] == 1
