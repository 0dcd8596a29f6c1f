"""Pool sizing, expiry and eviction, with a fake container factory (no Docker)."""

import asyncio
import itertools
import time
from typing import Any

import pytest

from node_agent.pools.demand import Demand
from node_agent.pools.keys import Layer, PoolKey
from node_agent.pools.pool import Pools
from node_agent.pools.warmcontainer import PoolConfig, WarmContainer
from tests.fakes.container import FakeAttached
from tests.fakes.docker import FakeEngine

FN_A = PoolKey(Layer.FUNCTION, "a", 1)
FN_B = PoolKey(Layer.FUNCTION, "b", 1)
FN_C = PoolKey(Layer.FUNCTION, "c", 1)
FN_COLD = PoolKey(Layer.FUNCTION, "cold", 1)
FN_F = PoolKey(Layer.FUNCTION, "f", 1)
FN_HOT = PoolKey(Layer.FUNCTION, "hot", 1)
FN_NEW = PoolKey(Layer.FUNCTION, "new", 1)
FN_OTHER = PoolKey(Layer.FUNCTION, "other", 1)
RT_PY = PoolKey.runtime("py")
RT_PYTHON = PoolKey.runtime("python")


def docker() -> FakeEngine:
    return FakeEngine(only={"remove"})  # the pools use nothing else


def make_pools(reusable: bool = True, **cfg: Any) -> tuple[Pools, FakeEngine, list[str]]:
    engine = docker()
    made: list[str] = []
    ids = itertools.count()

    async def factory(key: PoolKey) -> WarmContainer:
        cid = f"{key}#{next(ids)}"
        made.append(cid)
        return WarmContainer(cid=cid, key=key, attached=FakeAttached(), reusable=reusable)

    pools = Pools(engine, factory, PoolConfig(**cfg))
    return pools, engine, made


async def settle(pools: Pools) -> None:
    pools._tick()
    for _ in range(5):
        await asyncio.sleep(0)


def test_demand_follows_a_burst_fast_and_keeps_a_slow_baseline() -> None:
    d = Demand(window_s=10)
    for _ in range(10):
        d.hit()
    # ten calls at once: 5/s by the fast average (2 s), 1/s by the slow one (10 s)
    assert d.rate() == pytest.approx(5.0, rel=0.05)
    # ten seconds later the burst is forgotten; the baseline has decayed by e
    assert d.rate(now=d._t + 10) == pytest.approx(1.0 / 2.718, rel=0.05)


def test_the_first_observed_times_replace_the_priors() -> None:
    d = Demand(window_s=10)
    d.observe_service(0.002)
    d.observe_fill(0.2)
    assert (d.service_s, d.fill_s) == (0.002, 0.2)  # not 0.8 of the 50 ms / 500 ms priors
    d.observe_service(0.012)
    assert d.service_s == pytest.approx(0.004)  # then an average


def test_a_burst_sizes_the_pool_for_it_within_the_burst() -> None:
    pools, _, _ = make_pools(max_per_key=8)
    pools.want(RT_PYTHON)
    for _ in range(20):  # 20 calls in an instant (a 30-s average alone would say 0.7/s: 2)
        pools._demand[RT_PYTHON].hit()
    assert pools.target(RT_PYTHON) >= 6


async def test_no_demand_no_containers_and_minimum_is_kept() -> None:
    pools, _, made = make_pools(min_per_key={RT_PYTHON: 2})
    pools.want(RT_PYTHON)
    pools.want(FN_F)
    await settle(pools)
    assert pools.idle_counts() == {RT_PYTHON: 2}
    assert all(c.startswith(str(RT_PYTHON)) for c in made)


async def test_a_miss_grows_the_pool_and_a_hit_takes_the_newest() -> None:
    pools, _, _ = make_pools()
    assert pools.acquire(FN_F) is None  # cold fallback, but now there is demand
    await settle(pools)
    assert pools.idle_counts().get(FN_F, 0) >= 1
    wc = pools.acquire(FN_F)
    assert wc is not None and wc.key == FN_F
    pools.release(wc, healthy=True, service_s=0.01)
    assert pools.acquire(FN_F) is wc  # reusable containers come back


async def test_high_rate_targets_more_containers_within_the_maximum() -> None:
    pools, _, _ = make_pools(max_per_key=4, window_s=1)
    for _ in range(200):
        pools.acquire(FN_HOT)
    assert pools.target(FN_HOT) == 4
    await settle(pools)
    assert pools.idle_counts()[FN_HOT] == 4


@pytest.mark.parametrize(("reusable", "target"), [(True, 2), (False, 8)])
async def test_a_reusable_container_is_held_for_its_call_a_single_use_one_until_replaced(
    reusable: bool, target: int
) -> None:
    # one client calling back to back, 400 calls/s of 2 ms each: a reusable container serves
    # them all (one, and one spare); single-use ones are each replaced after their call
    pools, _, made = make_pools(reusable=reusable, max_per_key=8, window_s=1)
    pools.want(FN_F)
    await settle(pools)
    for _ in range(2):
        pools.acquire(FN_F)  # a first fill: what the key's containers are is known from it
        await settle(pools)
    d = pools._demand[FN_F]
    d.service_s, d.fill_s = 0.002, 0.3
    d._slow = d._fast = 400.0
    d._t = time.monotonic()
    assert made and pools.target(FN_F) == target


async def test_calls_waiting_for_a_reusable_pool_grow_it_to_as_many_as_wanted_at_once() -> None:
    # eight clients at once on 2 ms calls: Little's law on the mean says 4 containers, but
    # eight were wanted at the same moment, so the pool grows to eight
    pools, _, _ = make_pools(max_per_key=8, window_s=30)
    pools.want(FN_F)
    d = pools._demand[FN_F]
    d.service_s, d.fill_s = 0.002, 5.0
    d._slow = d._fast = 1400.0
    d._t = time.monotonic()
    assert pools.target(FN_F) == 4
    pools._busy[FN_F] = 4
    waits = [asyncio.create_task(pools.wait(FN_F)) for _ in range(4)]
    await asyncio.sleep(0)
    assert pools.target(FN_F) == 8
    await pools.close(timeout=1)
    await asyncio.gather(*waits)


async def test_unhealthy_and_single_use_containers_are_destroyed() -> None:
    pools, engine, _ = make_pools(refill_delay_s=0.0)
    pools.acquire(FN_F)
    await settle(pools)
    wc = pools.acquire(FN_F)
    assert wc is not None
    pools.release(wc, healthy=False, service_s=0.01)
    await settle(pools)
    assert wc.cid in engine.removed
    one_shot = WarmContainer(cid="x", key=FN_F, attached=FakeAttached(), reusable=False)
    pools.release(one_shot, healthy=True, service_s=0.01)
    await settle(pools)
    assert "x" in engine.removed


def single_use_pools(n: int, **cfg: Any) -> tuple[Pools, FakeEngine, list[str]]:
    """Pools whose factory makes single-use containers (warm-runtime), ``n`` of them wanted."""
    pools, engine, made = make_pools(reusable=False, min_per_key={RT_PY: n}, **cfg)
    pools.want(RT_PY)
    return pools, engine, made


async def test_a_single_use_container_is_replaced_after_its_call_not_during_it() -> None:
    pools, engine, made = single_use_pools(2, refill_delay_s=0.0)
    await settle(pools)
    assert pools.idle_counts() == {RT_PY: 2}
    wc = pools.acquire(RT_PY)
    assert wc is not None and pools.idle_counts() == {RT_PY: 1}
    await settle(pools)  # the pool loop runs while the call does: no container is made
    assert len(made) == 2 and pools.idle_counts() == {RT_PY: 1}
    pools.release(wc, healthy=True, service_s=0.01)
    await asyncio.sleep(0.01)  # the refill timer (delay 0) fires
    await settle(pools)
    assert len(made) == 3 and pools.idle_counts() == {RT_PY: 2}
    assert wc.cid in engine.removed  # used once, then destroyed


async def test_taking_the_last_single_use_container_refills_at_once() -> None:
    pools, _, made = single_use_pools(1)
    await settle(pools)
    wc = pools.acquire(RT_PY)
    assert wc is not None and pools.idle_counts() == {}
    await settle(pools)  # still in its call: an empty pool is refilled anyway
    assert len(made) >= 2 and pools.idle_counts().get(RT_PY, 0) >= 1


async def test_idle_containers_expire_down_to_the_target() -> None:
    pools, engine, _ = make_pools(idle_s=0.0, window_s=0.01)
    pools.acquire(FN_F)
    await settle(pools)
    assert pools.idle_counts()
    await asyncio.sleep(0.05)  # the demand decays to nothing; the container idles past idle_s
    await settle(pools)
    assert pools.idle_counts() == {}
    assert engine.removed


async def test_at_capacity_the_least_recently_used_idle_container_is_evicted() -> None:
    pools, engine, _ = make_pools(max_warm=2, max_per_key=1)
    for key in (FN_A, FN_B):
        pools.acquire(key)
        await settle(pools)
    assert set(pools.idle_counts()) == {FN_A, FN_B}
    a_cid = next(iter(pools._idle[FN_A])).cid
    pools._idle[FN_A][0].last_used -= 100  # a is the least recently used
    pools.acquire(FN_C)
    await settle(pools)
    assert a_cid in engine.removed
    assert set(pools.idle_counts()) == {FN_B, FN_C}


async def test_busy_containers_count_toward_the_maximum_so_nothing_churns() -> None:
    pools, engine, made = make_pools(max_per_key=2, window_s=1)
    for _ in range(100):
        pools.acquire(FN_HOT)
    await settle(pools)
    a, b = pools.acquire(FN_HOT), pools.acquire(FN_HOT)
    assert a is not None and b is not None
    await settle(pools)  # both busy: the pool is full, nothing new is made
    assert len(made) == 2
    pools.release(a, healthy=True, service_s=0.01)
    pools.release(b, healthy=True, service_s=0.01)
    await settle(pools)
    assert engine.removed == [] and len(made) == 2 and pools.idle_counts() == {FN_HOT: 2}


async def test_a_fill_that_ends_while_the_pools_close_is_removed_before_close_returns() -> None:
    """Closing waits for fills under way; what they make then is destroyed, and close() has
    waited for that too (the agent closes its Docker client right after)."""

    class SlowEngine(FakeEngine):
        async def remove(self, cid: str, grace_s: float = 0) -> None:
            await asyncio.sleep(0.05)  # as Docker takes its time
            await super().remove(cid, grace_s)

    engine = SlowEngine(only={"remove"})
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow_factory(key: PoolKey) -> WarmContainer:
        started.set()
        await finish.wait()
        return WarmContainer(cid="late", key=key, attached=FakeAttached(), reusable=True)

    pools = Pools(engine, slow_factory, PoolConfig(min_per_key={RT_PYTHON: 1}))
    pools.want(RT_PYTHON)
    pools._tick()
    await started.wait()
    closing = asyncio.create_task(pools.close(timeout=5))
    await asyncio.sleep(0.01)
    finish.set()
    await closing
    assert engine.removed == ["late"]


async def busy_pool(service_s: float, fill_s: float) -> tuple[Pools, FakeEngine, WarmContainer]:
    """A reusable key with one container, busy with a call."""
    pools, engine, _ = make_pools(max_per_key=1)
    pools.acquire(FN_F)
    await settle(pools)
    wc = pools.acquire(FN_F)
    assert wc is not None
    d = pools._demand[FN_F]
    d.service_s, d.fill_s = service_s, fill_s
    return pools, engine, wc


async def test_a_call_past_the_pool_waits_for_a_busy_container_when_that_is_quicker() -> None:
    pools, _, wc = await busy_pool(service_s=0.01, fill_s=5.0)
    waiting = asyncio.create_task(pools.wait(FN_F))
    await settle(pools)
    assert not waiting.done()
    pools.release(wc, healthy=True, service_s=0.01)
    assert await asyncio.wait_for(waiting, 1) is wc  # handed over, not left idle
    assert pools.idle_counts() == {}
    pools.release(wc, healthy=True, service_s=0.01)
    assert pools.idle_counts() == {FN_F: 1}


async def test_no_wait_for_nothing_for_long_calls_or_for_a_broken_container() -> None:
    pools, _, _ = make_pools()
    pools.acquire(FN_NEW)
    assert await pools.wait(FN_OTHER) is None  # unknown key: cold
    pools, _, wc = await busy_pool(service_s=2.0, fill_s=0.5)
    assert await asyncio.wait_for(pools.wait(FN_F), 1) is None  # its call lasts longer than a start
    pools, engine, wc = await busy_pool(service_s=0.01, fill_s=0.3)
    waiting = asyncio.create_task(pools.wait(FN_F))
    await settle(pools)
    pools.release(wc, healthy=False, service_s=0.01)  # crashed: destroyed, not handed over
    assert await asyncio.wait_for(waiting, 2) is None  # the wait ran out (fill_s)
    await settle(pools)
    assert wc.cid in engine.removed


async def test_a_new_container_goes_to_a_waiting_call_and_close_ends_the_waits() -> None:
    gate = asyncio.Event()
    ids = itertools.count()

    async def slow_factory(key: PoolKey) -> WarmContainer:
        await gate.wait()
        return WarmContainer(cid=f"c{next(ids)}", key=key, attached=FakeAttached(), reusable=True)

    pools = Pools(docker(), slow_factory, PoolConfig(max_per_key=4))
    for _ in range(3):
        assert pools.acquire(FN_F) is None  # demand, and nothing idle yet
    pools._tick()  # fills start, and take a while
    assert pools._filling[FN_F] >= 2
    first = asyncio.create_task(pools.wait(FN_F))
    second = asyncio.create_task(pools.wait(FN_F))
    await asyncio.sleep(0)
    gate.set()
    got = await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert {wc.cid for wc in got if wc} == {"c0", "c1"}  # each new container to a waiting call
    pools._demand[FN_F].fill_s = 5.0  # a start takes far longer than their calls
    late = asyncio.create_task(pools.wait(FN_F))  # the busy ones should serve it in time
    await asyncio.sleep(0)
    assert not late.done()
    await pools.close(timeout=1)
    assert await asyncio.wait_for(late, 1) is None


async def test_a_container_handed_over_as_the_wait_ends_is_not_lost() -> None:
    pools, _, wc = await busy_pool(service_s=0.01, fill_s=5.0)
    waiting = asyncio.create_task(pools.wait(FN_F))
    await settle(pools)
    pools.release(wc, healthy=True, service_s=0.01)  # handed over...
    waiting.cancel()  # ...and the waiting call is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pools.idle_counts() == {FN_F: 1} and pools._busy[FN_F] == 0


async def test_no_more_containers_are_made_at_once_than_max_fills() -> None:
    gate = asyncio.Event()
    started: list[str] = []
    in_flight = [0, 0]  # now, most

    async def slow_factory(key: PoolKey) -> WarmContainer:
        started.append(key)
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await gate.wait()
        await asyncio.sleep(0)
        in_flight[0] -= 1
        return WarmContainer(cid=f"c{len(started)}", key=key, attached=FakeAttached(), reusable=True)

    pools = Pools(docker(), slow_factory, PoolConfig(max_per_key=8, max_fills=2))
    for _ in range(50):  # demand for 8 containers of one key, and some of another
        pools.acquire(FN_HOT)
    pools.acquire(FN_COLD)
    await settle(pools)
    assert started == [FN_HOT, FN_HOT]  # two at once, the busiest key first
    gate.set()
    for _ in range(40):  # the pool loop starts the next ones as fills end
        await settle(pools)
    assert in_flight[1] == 2
    assert pools.idle_counts() == {FN_HOT: pools.target(FN_HOT), FN_COLD: pools.target(FN_COLD)}


# --- adaptive: layers -------------------------------------------------------------------


async def test_a_function_pool_waits_for_repeat_demand() -> None:
    pools, _, made = make_pools(repeat_calls=1.5)
    assert pools.acquire(FN_NEW, stem_backed=True) is None  # a first call: a stem cell's, no pool
    await settle(pools)
    assert made == [] and pools.target(FN_NEW) == 0
    assert pools.acquire(FN_NEW, stem_backed=True) is None  # the second call in the window
    await settle(pools)
    assert pools.target(FN_NEW) >= 1 and any(c.startswith(str(FN_NEW)) for c in made)


async def test_a_function_no_stem_cell_can_serve_gets_its_pool_from_its_first_call() -> None:
    # dependencies or limits of its own: its calls run cold until its pool has a container
    pools, _, made = make_pools(repeat_calls=1.5)
    assert pools.acquire(FN_NEW, stem_backed=False) is None
    await settle(pools)
    assert pools.target(FN_NEW) >= 1 and any(c.startswith(str(FN_NEW)) for c in made)


async def test_a_promoted_stem_cell_serves_its_function_and_its_pool_is_refilled() -> None:
    pools, engine, made = make_pools(reusable=False, min_per_key={RT_PY: 1}, refill_delay_s=0, repeat_calls=1.5)
    pools.want(RT_PY)
    await settle(pools)
    stem = pools.acquire(RT_PY)
    assert stem is not None and not stem.reusable
    session: Any = object()  # the handler session the call opened on the stem cell's shim
    pools.promote(stem, FN_NEW, session, service_s=0.01)
    warm = pools.acquire(FN_NEW)  # the function's next call: the same container, warm
    assert warm is not None and warm.cid == stem.cid and warm.reusable and warm.session is session
    assert stem.cid not in engine.removed
    for _ in range(20):  # the stem pool makes a new cell for the one it gave away
        await settle(pools)
        if pools.idle_counts().get(RT_PY):
            break
    assert pools.idle_counts()[RT_PY] >= 1 and len([c for c in made if c.startswith(str(RT_PY))]) >= 2


async def test_a_promoted_cell_past_the_function_maximum_is_destroyed() -> None:
    pools, engine, _ = make_pools(reusable=False, min_per_key={RT_PY: 2}, max_per_key=1, refill_delay_s=0)
    pools.want(RT_PY)
    await settle(pools)
    first, second = pools.acquire(RT_PY), pools.acquire(RT_PY)
    assert first is not None and second is not None
    pools.promote(first, FN_NEW, object(), 0.01)  # type: ignore[arg-type]
    pools.promote(second, FN_NEW, object(), 0.01)  # type: ignore[arg-type]
    await settle(pools)
    assert pools.idle_counts()[FN_NEW] == 1 and second.cid in engine.removed


async def test_at_capacity_a_stem_cell_outlives_a_function_container_called_as_often() -> None:
    """The rule: evict the idle container whose key saves least per second (its calls per
    second times what its layer saves a call); a stem cell spares a cold start, a function
    container (where stem cells exist) only the stem's code load."""
    saving = {Layer.RUNTIME: 1.0, Layer.FUNCTION: 0.1}
    pools, engine, _ = make_pools(max_warm=2, max_per_key=1, layer_saving=saving)
    for key in (RT_PY, FN_A):
        pools.acquire(key)
        await settle(pools)
    assert set(pools.idle_counts()) == {RT_PY, FN_A}
    fn_cid = pools._idle[FN_A][0].cid
    pools._idle[RT_PY][0].last_used -= 100  # the stem cell is the least recently used
    pools.acquire(FN_B)  # as often as a, more than nothing
    pools.acquire(FN_B)
    await settle(pools)
    assert pools.benefit(RT_PY) > pools.benefit(FN_A)
    assert fn_cid in engine.removed and RT_PY in pools.idle_counts()


async def test_at_capacity_a_hot_function_outlives_an_idle_runtime() -> None:
    saving = {Layer.RUNTIME: 1.0, Layer.FUNCTION: 0.1}
    pools, engine, _ = make_pools(max_warm=1, max_per_key=1, layer_saving=saving, window_s=1)
    pools.acquire(RT_PY)
    await settle(pools)
    stem_cid = pools._idle[RT_PY][0].cid
    for _ in range(50):  # 50 calls now save more than one stem call a while ago
        pools.acquire(FN_HOT)
    pools._demand[RT_PY]._t -= 10  # the runtime's demand has decayed
    await settle(pools)
    assert stem_cid in engine.removed and FN_HOT in pools.idle_counts()


async def test_a_minimum_set_later_is_kept_and_can_be_lifted() -> None:
    pools, _, made = make_pools()
    pools.set_minimum(RT_PY, 2)
    await settle(pools)
    assert pools.idle_counts() == {RT_PY: 2}
    pools.set_minimum(RT_PY, 0)
    assert pools.target(RT_PY) <= 1 and len(made) == 2


async def test_an_announced_first_call_keeps_a_container_until_it_comes() -> None:
    pools, _, _ = make_pools(reusable=False)
    for _ in range(3):  # three new versions of functions on this runtime
        pools.expect(RT_PY, ttl_s=60)
    await settle(pools)
    assert pools.target(RT_PY) == 3 and pools.idle_counts() == {RT_PY: 3}
    assert pools.acquire(RT_PY) is not None  # one first call came: two still expected
    assert pools._demand[RT_PY].expected() == 2


def test_an_announcement_lapses_at_its_deadline() -> None:
    d = Demand(window_s=30)
    d.expect(ttl_s=5)
    assert d.expected() == 1
    assert d.expected(now=time.monotonic() + 6) == 0


async def test_past_a_busy_pool_a_call_waits_rather_than_take_a_slower_stem_cell() -> None:
    pools, _, wc = await busy_pool(service_s=0.002, fill_s=0.3)
    pools.want(RT_PY)
    assert pools.stem_delay(RT_PY, FN_F) is None  # no idle stem cell: nothing to compare
    pools._idle[RT_PY].append(WarmContainer(cid="stem#0", key=RT_PY, attached=FakeAttached(), reusable=False))
    pools._demand[RT_PY].service_s = 0.025  # code load and the call on a stem cell
    assert pools.stem_delay(RT_PY, FN_F) == pytest.approx(0.023)
    # one call ahead clears in 2 ms, a stem cell adds 23: wait, and get the busy container
    waiting = asyncio.create_task(pools.wait(FN_F, instead_s=pools.stem_delay(RT_PY, FN_F)))
    await settle(pools)
    assert not waiting.done()
    pools.release(wc, healthy=True, service_s=0.002)
    assert await asyncio.wait_for(waiting, 1) is wc
    # a slow function: its busy container frees later than a stem cell serves: no wait
    pools._demand[FN_F].service_s = 0.5
    assert await asyncio.wait_for(pools.wait(FN_F, instead_s=pools.stem_delay(RT_PY, FN_F)), 1) is None


async def test_a_wait_instead_of_a_stem_cell_ends_at_the_stem_cells_delay() -> None:
    pools, _, _ = await busy_pool(service_s=0.001, fill_s=5.0)
    # the busy container is never released: the wait gives up after 50 ms, not the 5-s fill
    assert await asyncio.wait_for(pools.wait(FN_F, instead_s=0.05), 2) is None
    # a container being made does not make the call wait when a stem cell is there
    pools._filling[FN_F] = 1
    pools._busy[FN_F] = 0
    assert await asyncio.wait_for(pools.wait(FN_F, instead_s=0.05), 1) is None
