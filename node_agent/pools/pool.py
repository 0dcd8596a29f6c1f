"""Warm container pools whose sizes follow demand.

Per key (a :class:`~node_agent.pools.keys.PoolKey`: a runtime's for warm-runtime, a function
version's for warm-function):

* demand is a decaying call rate (events/s, time constant ``window_s``);
* the target size (idle + being made + busy with calls) is what Little's law says the
  calls need while a container is held: ``ceil(rate * hold_s) + 1`` while there is demand,
  clamped to the key's minimum and ``max_per_key``; ``hold_s`` is a call's service time for
  a reusable container, plus the time to make its replacement for a single-use one; a
  reusable key also keeps as many as its calls recently wanted at once (busy and waiting);
* idle containers beyond the target expire after ``idle_s``;
* when the node's warm capacity (``max_warm``) is full, the least recently used idle
  containers of other keys are evicted to make room.

A container is never reused across keys; one whose call crashed, timed out or ran out of
memory is destroyed by the caller (``release(healthy=False)``), never returned.

A call that finds no idle container of a reusable key whose containers are all busy (or
being made) may wait for one (``wait``): a burst larger than the pool then queues for a few
milliseconds behind calls that take that long, instead of each starting a container of its
own (a cold start, seconds when several start at once on a small machine). It waits only
while that is likely to be quicker than a cold start: up to the key's mean time to make a
container, and only if the queue ahead of it should clear by then. A key with no container
at all falls back at once.

Single-use containers (warm-runtime, command-protocol warm-function) are replaced, not
returned. Making one (create + start) takes much of a small machine's CPU for a while, so the
replacement waits until the call that took a container has ended (and ``refill_delay_s``
more, for its answer to go out), unless the key has no idle container left or the call
runs longer than calls usually take. The used container is destroyed after the same delay.
"""

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from common.lifecycle import TaskSet, wait_event
from common.logs import fields
from node_agent.containers.docker import Engine
from node_agent.pools.demand import Demand
from node_agent.pools.keys import Layer, PoolKey
from node_agent.pools.warmcontainer import PoolConfig, WarmContainer
from node_agent.wire.stdio import HandlerSession

log = logging.getLogger(__name__)


Factory = Callable[[PoolKey], Awaitable[WarmContainer]]


class Pools:
    def __init__(self, engine: Engine, factory: Factory, config: PoolConfig) -> None:
        self._engine = engine
        self._factory = factory
        self.config = config
        # fills and teardowns: not critical one by one, but all awaited by close()
        self._tasks = TaskSet("pools")
        self._idle: dict[PoolKey, deque[WarmContainer]] = {}
        self._filling: dict[PoolKey, int] = {}
        self._busy: dict[PoolKey, int] = {}  # reusable ones handed to calls, not yet released
        self._demand: dict[PoolKey, Demand] = {}
        # whether a key's containers serve call after call, known from its first one made
        # (until then: a function's are taken to be, a runtime's stem cells are not)
        self._reusable: dict[PoolKey, bool] = {}
        # function keys whose calls a stem cell can serve (acquire's ``stem_backed``)
        self._stem_backed: set[PoolKey] = set()
        # single-use keys: no refill before this time (a call is using the CPU)
        self._hold: dict[PoolKey, float] = {}
        self._wake = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False
        # calls waiting for a busy reusable container of their key, oldest first
        self._waiters: dict[PoolKey, deque[asyncio.Future[WarmContainer | None]]] = {}

    def expect(self, key: PoolKey, ttl_s: float) -> None:
        """A call of ``key`` is expected within ``ttl_s``: keep a container for it meanwhile."""
        self.want(key)
        self._demand[key].expect(ttl_s)
        self._wake.set()

    def set_minimum(self, key: PoolKey, n: int) -> None:
        """Keep at least ``n`` idle containers of ``key`` (0: none; demand still counts)."""
        if n > 0:
            self.config.min_per_key[key] = n
            self.want(key)
        else:
            self.config.min_per_key.pop(key, None)
        self._wake.set()

    # --- used by calls --------------------------------------------------------------
    def want(self, key: PoolKey) -> None:
        """Make ``key`` known (its demand is tracked and its pool maintained)."""
        if key not in self._demand:
            self._demand[key] = Demand(self.config.window_s)
            self._idle.setdefault(key, deque())

    def acquire(self, key: PoolKey, stem_backed: bool = False) -> WarmContainer | None:
        """An idle warm container for ``key`` (most recently used first), or None.
        ``stem_backed``: a stem cell can serve the function's calls meanwhile, so its own pool
        waits for repeat demand (``repeat_calls``); otherwise it grows from the first call."""
        self.want(key)
        if stem_backed:
            self._stem_backed.add(key)
        else:
            self._stem_backed.discard(key)
        self._demand[key].hit()
        self._demand[key].arrived()
        idle = self._idle[key]
        if not idle:
            self._wake.set()  # refill now rather than at the next tick
            return None
        wc = idle.pop()
        if wc.reusable:  # a single-use container never comes back: it is not part of the pool
            self._busy[key] = self._busy.get(key, 0) + 1
            self._demand[key].observe_concurrency(self._busy[key] + len(self._waiters.get(key, ())))
        elif idle:
            # Replace it once the call is over (release), or once it runs longer than usual.
            hold = min(1.5 * self._demand[key].service_s, 1.0)
            self._hold[key] = time.monotonic() + hold
            self._wake_in(hold)
            return wc
        if self._size(key) < self.target(key):
            self._wake.set()
        return wc

    async def wait(self, key: PoolKey, instead_s: float | None = None) -> WarmContainer | None:
        """After ``acquire`` found nothing: wait for a reusable container of ``key`` that is
        busy with a call or being made, if that should be quicker than the call's other way
        to start: a cold start, or ``instead_s`` when given (what an idle stem cell adds to a
        call, :meth:`stem_delay`). None (go the other way) otherwise, or when the wait runs
        out."""
        d = self._demand.get(key)
        busy, filling = self._busy.get(key, 0), self._filling.get(key, 0)
        if d is None or self._closed or busy + filling == 0:
            return None  # nothing of this key will be free: cold at once
        queue = self._waiters.setdefault(key, deque())
        ahead = len(queue)
        d.observe_concurrency(busy + ahead + 1)  # the pool is short of this many at once
        limit = d.fill_s if instead_s is None else min(instead_s, d.fill_s)
        # the busy containers serve the calls ahead of this one in turn; a container being
        # made is ready sooner than one this call would start now (not than a stem cell)
        quicker = busy > 0 and d.service_s * (ahead + 1) / busy < limit
        if not quicker and (instead_s is not None or filling <= ahead):
            return None
        future: asyncio.Future[WarmContainer | None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        taken: WarmContainer | None = None
        try:
            async with asyncio.timeout(limit):
                taken = await future
            return taken
        except TimeoutError:
            return None
        finally:
            if not future.done():
                future.cancel()  # skipped by _hand_over from now on
                queue.remove(future)
            elif taken is None and not future.cancelled() and (wc := future.result()) is not None:
                # Handed a container in the instant the wait ran out (or was cancelled):
                # it goes to the next waiter or back to the pool, not astray.
                self._busy[key] -= 1
                self._put_back(wc)

    def stem_delay(self, stem: PoolKey, key: PoolKey) -> float | None:
        """What serving a call of ``key`` on an idle stem cell of ``stem`` would add to it (the
        stem cells' mean time per call less the function's own, at least a millisecond), or
        None when no stem cell is idle."""
        if not self._idle.get(stem):
            return None
        d, own = self._demand.get(stem), self._demand.get(key)
        if d is None:
            return None
        return max(d.service_s - (own.service_s if own is not None else 0.0), 0.001)

    def _hand_over(self, wc: WarmContainer) -> bool:
        """Give an idle reusable container to the oldest call waiting for its key."""
        queue = self._waiters.get(wc.key)
        while queue:
            future = queue.popleft()
            if not future.done():
                self._busy[wc.key] = self._busy.get(wc.key, 0) + 1
                future.set_result(wc)
                return True
        return False

    def release(self, wc: WarmContainer, healthy: bool, service_s: float) -> None:
        self._demand[wc.key].observe_service(service_s)
        if wc.reusable:
            self._busy[wc.key] = self._busy.get(wc.key, 0) - 1
        wc.calls += 1
        wc.last_used = time.monotonic()
        if healthy and wc.reusable:
            self._put_back(wc)
        elif not wc.reusable:
            delay = self.config.refill_delay_s
            self._hold[wc.key] = time.monotonic() + delay
            self._destroy(wc, "used" if healthy else "unhealthy", delay)
            self._wake_in(delay)
        else:
            self._destroy(wc, "unhealthy")
            self._wake.set()

    def _put_back(self, wc: WarmContainer) -> None:
        """A healthy reusable container, free again: to a waiting call, else idle."""
        if self._closed:
            self._destroy(wc, "closed")
        elif not self._hand_over(wc):
            if self._size(wc.key) < self.config.max_per_key:
                self._idle[wc.key].append(wc)
            else:
                self._destroy(wc, "over the maximum")

    def promote(self, wc: WarmContainer, key: PoolKey, session: HandlerSession, service_s: float) -> None:
        """A single-use stem cell whose shim now serves one function's handler: it leaves its
        pool (refilled as after any call) and joins ``key``'s pool as a reusable container,
        so the function's next call finds it warm without a second container start."""
        stem = wc.key
        self._demand[stem].observe_service(service_s)
        delay = self.config.refill_delay_s
        self._hold[stem] = time.monotonic() + delay
        self._wake_in(delay)
        self.want(key)
        promoted = WarmContainer(
            cid=wc.cid, key=key, attached=wc.attached, reusable=True, session=session, shim=wc.shim, created=wc.created
        )
        promoted.calls = wc.calls + 1
        self._reusable[key] = True
        log.info("pool.promoted", extra=fields(container=wc.cid[:12], stem=stem, key=key))
        self._put_back(promoted)

    def _wake_in(self, delay: float) -> None:
        """Run the pool loop after ``delay`` (a timer, cancelled by close)."""

        def fire() -> None:
            self._timers.discard(timer)
            self._wake.set()

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)

    # --- sizing ---------------------------------------------------------------------
    def target(self, key: PoolKey) -> int:
        d = self._demand.get(key)
        minimum = self.config.min_per_key.get(key, 0)
        if d is None:
            return minimum
        rate = d.rate()
        need = 0
        if key in self._stem_backed and d.recent_calls() < self.config.repeat_calls:
            pass  # no repeat demand yet: served by a stem cell until there is
        elif rate > 1.0 / (self.config.window_s * 20):
            # reusable: containers busy with calls; single-use: also being replaced after each
            if self._reusable.get(key, key.layer is Layer.FUNCTION):
                # busy with calls (Little's law), or as many as recently wanted at once
                need = max(math.ceil(rate * d.service_s) + 1, math.ceil(d.peak() - 0.01))
            else:  # single-use: each is also being replaced after its call
                need = math.ceil(rate * (d.service_s + d.fill_s)) + 1
        need = max(need, d.expected())  # a container per announced call (a new version's first)
        return max(minimum, min(self.config.max_per_key, need))

    def idle_counts(self) -> dict[PoolKey, int]:
        return {k: len(v) for k, v in self._idle.items() if v}

    def counts(self) -> dict[PoolKey, tuple[int, int, int]]:
        """Per known key: idle containers, reusable ones busy with a call, ones being made
        (a single-use container taken by a call has left its pool)."""
        keys = set(self._idle) | {k for k, n in self._busy.items() if n} | {k for k, n in self._filling.items() if n}
        return {k: (len(self._idle.get(k, ())), self._busy.get(k, 0), self._filling.get(k, 0)) for k in keys}

    def _size(self, key: PoolKey) -> int:
        """Containers of ``key``: idle, being made, and busy with calls."""
        return len(self._idle.get(key, ())) + self._filling.get(key, 0) + self._busy.get(key, 0)

    def _total(self) -> int:
        return sum(len(v) for v in self._idle.values()) + sum(self._filling.values())

    async def maintain(self) -> None:
        """The pool loop: expire, evict, refill. Runs until cancelled."""
        for key in self.config.min_per_key:
            self.want(key)
        shown: dict[PoolKey, int] = {}
        shown_at = 0.0
        while True:
            self._tick()
            # What the pools hold, when it changed (at most once a second): stem cells
            # (rt:) and function containers (fn:) per key.
            now = time.monotonic()
            if now - shown_at >= 1.0 and (sizes := self.idle_counts()) != shown:
                log.info(
                    "pool.sizes", extra=fields(idle=" ".join(f"{k}={n}" for k, n in sorted(sizes.items(), key=str)))
                )
                shown, shown_at = sizes, now
            self._wake.clear()
            await wait_event(self._wake, self.config.tick_s)

    def _tick(self) -> None:
        now = time.monotonic()
        for key, idle in self._idle.items():
            target = self.target(key)
            # expire: the least recently used first, only what is above the target
            while idle and self._size(key) > target and now - idle[0].last_used > self.config.idle_s:
                self._destroy(idle.popleft(), "idle")
        for key in sorted(self._idle, key=lambda k: -self._demand[k].rate(now)):
            if now < self._hold.get(key, 0.0) and self._idle[key]:
                continue  # a call of this key is running: refill after it
            missing = self.target(key) - self._size(key)
            for _ in range(max(missing, 0)):
                if self.config.max_fills and sum(self._filling.values()) >= self.config.max_fills:
                    return  # the busiest keys first; the rest when a fill ends
                if self._total() >= self.config.max_warm and not self._evict_for(key):
                    break
                self._fill(key)

    def benefit(self, key: PoolKey, now: float | None = None) -> float:
        """The time an idle container of ``key`` is expected to save per second: its calls per
        second times what its layer saves a call (``layer_saving``)."""
        d = self._demand.get(key)
        rate = d.rate(now) if d is not None else 0.0
        return rate * self.config.layer_saving.get(key.layer, 1.0)

    def _evict_for(self, key: PoolKey) -> bool:
        """Make room for one container of ``key`` by evicting the least recently used idle
        container of a key that needs it less: one holding more than its target, or one whose
        expected saving per second (``benefit``) is lower — never an equal one, or two keys
        would evict each other in turn. Between layers this evicts first what saves least:
        with ``layer_saving`` weights, a stem cell (which spares a cold start) outlives the
        idle container of a function called as often (which spares only a stem's code load)."""
        now = time.monotonic()
        benefit = self.benefit(key, now)
        victims = [
            (q[0].last_used, k)
            for k, q in self._idle.items()
            if k != key and q and (self._size(k) > self.target(k) or self.benefit(k, now) < benefit)
        ]
        if not victims:
            return False
        _, victim_key = min(victims)
        self._destroy(self._idle[victim_key].popleft(), "evicted")
        return True

    def _fill(self, key: PoolKey) -> None:
        self._filling[key] = self._filling.get(key, 0) + 1
        self._tasks.spawn(self._make(key), f"fill:{key}", critical=False)

    async def _make(self, key: PoolKey) -> None:
        t0 = time.monotonic()
        try:
            wc = await self._factory(key)
        except Exception as err:
            log.warning("pool.fill_failed", extra=fields(key=key, error=str(err)[:300]))
            # Back off a failing key: count it as filling for a moment.
            await asyncio.sleep(2.0)
            return
        finally:
            self._filling[key] -= 1
            self._wake.set()  # a fill slot is free: the pool loop may start the next one
        self._demand[key].observe_fill(time.monotonic() - t0)
        self._reusable[key] = wc.reusable
        if self._closed:  # close() waits for this teardown too (TaskSet.wait_all)
            self._destroy(wc, "closed")
        elif wc.reusable:
            self._put_back(wc)  # a call waiting for one takes it at once
        else:
            self._idle[key].append(wc)

    def _destroy(self, wc: WarmContainer, why: str, delay: float = 0.0) -> None:
        log.debug("pool.destroy", extra=fields(key=wc.key, container=wc.cid[:12], why=why))
        self._tasks.spawn(self._teardown(wc, delay), f"destroy:{wc.cid[:12]}", critical=False)

    async def _teardown(self, wc: WarmContainer, delay: float = 0.0) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            # the socket channel owns the attach stream too, once it reads it
            await (wc.socket or wc.attached).close()
        finally:
            await self._engine.remove(wc.cid)

    async def close(self, timeout: float = 30.0) -> None:
        """Destroy every idle container; wait for fills and teardowns under way. Call it once
        no call holds a container any more (a container released later is destroyed too)."""
        self._closed = True
        for queue in self._waiters.values():
            for future in queue:
                if not future.done():
                    future.set_result(None)
            queue.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        idle = [wc for q in self._idle.values() for wc in q]
        for q in self._idle.values():
            q.clear()
        await asyncio.gather(*(self._teardown(wc) for wc in idle), return_exceptions=True)
        # fills finishing now destroy what they made (self._closed)
        await self._tasks.drain(timeout)
