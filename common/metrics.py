"""A service's Prometheus metrics: its own registry, what is read just before a scrape, and
the text it answers ``GET /metrics`` with.

No module-level registry: prometheus_client's global ``REGISTRY`` is never used. Each
service's composition root makes one :class:`Metrics` and passes it to what counts (tests
build several services in one process, each with its own figures). Most figures are read
at scrape time from the state the service already keeps (custom collectors); what needs
NATS is fetched by a :class:`Cached` fetch registered with :meth:`Metrics.before_scrape`,
so that a scrape storm asks NATS at most once per ``ttl_s``.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from common.logs import fields

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Call durations, from a warm call's milliseconds to a long one's minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """One service's registry and the async refreshes that run before each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._before: list[Callable[[], Awaitable[object]]] = []

    def before_scrape(self, refresh: Callable[[], Awaitable[object]]) -> None:
        """``refresh()`` runs (concurrently with the others) before each scrape renders: it
        updates what a collector then reads synchronously. It must bound its own time."""
        self._before.append(refresh)

    async def render(self) -> bytes:
        """The Prometheus text exposition of the registry, after the refreshes."""
        if self._before:
            await asyncio.gather(*(r() for r in self._before))
        return generate_latest(self.registry)


class Cached(Generic[T]):
    """The last value of an async ``fetch``, fetched again when older than ``ttl_s``.

    Concurrent callers share one fetch. A fetch gets ``timeout_s``; one that fails or runs
    out leaves the last value in place (``value`` is None until a first success), so a
    scrape is never held up longer than that, and a NATS outage shows as a value that stops
    moving (with its age in ``age_s``) rather than as a failed scrape.
    """

    def __init__(self, name: str, fetch: Callable[[], Awaitable[T]], ttl_s: float = 1.5, timeout_s: float = 1.0):
        self.name = name
        self._fetch = fetch
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.value: T | None = None
        self._at: float | None = None  # monotonic time of the last success
        self._tried_at = -float("inf")
        self._running: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def age_s(self) -> float | None:
        """Seconds since the last successful fetch (None before one)."""
        return None if self._at is None else time.monotonic() - self._at

    async def get(self) -> T | None:
        running = self._running
        if running is None or running.done():
            if time.monotonic() - self._tried_at < self.ttl_s:
                return self.value
            self._tried_at = time.monotonic()
            self._running = running = asyncio.create_task(self._refresh(), name=f"metrics:{self.name}")
        # Shielded: a scrape that goes away does not cancel the fetch the others share.
        await asyncio.shield(running)
        return self.value

    async def _refresh(self) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                value = await self._fetch()
        except Exception as err:  # a loop boundary of sorts: the next scrape tries again
            if not self._failing:
                log.warning("metrics.fetch_failed", extra=fields(source=self.name, error=repr(err)))
            self._failing = True
            return
        if self._failing:
            log.info("metrics.fetch_recovered", extra=fields(source=self.name))
        self._failing = False
        self.value, self._at = value, time.monotonic()
