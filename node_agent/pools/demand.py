"""How much a pool key is called: a decaying call rate, and the times the pool sizes by."""

import math
import time
from collections import deque


class Demand:
    """Calls per second of one key: the larger of a slow average (``window_s``, the baseline)
    and a fast one (``FAST_TAU_S``), so that a burst grows the pool within seconds instead of
    moving a 30-s average by a little. Pools shrink only by idle expiry, so the fast rate
    falling back does not churn containers."""

    FAST_TAU_S = 2.0

    def __init__(self, window_s: float) -> None:
        self.tau = window_s
        self._fast_tau = min(self.FAST_TAU_S, window_s)
        self._slow = 0.0
        self._fast = 0.0
        self._t = time.monotonic()
        # mean time a call holds a container, and to make one ready (EWMAs; these priors
        # count until the first observation of each replaces them)
        self.service_s = 0.05
        self.fill_s = 0.5
        self._observed_service = self._observed_fill = False
        self._peak, self._peak_t = 0.0, self._t
        # calls announced before they come (a new function version's first call), each
        # until it comes or its deadline passes
        self._expected: deque[float] = deque()

    def rate(self, now: float | None = None) -> float:
        slow, fast = self._decayed(time.monotonic() if now is None else now)
        return max(slow, fast)

    def _decayed(self, now: float) -> tuple[float, float]:
        dt = now - self._t
        return self._slow * math.exp(-dt / self.tau), self._fast * math.exp(-dt / self._fast_tau)

    def hit(self) -> None:
        now = time.monotonic()
        slow, fast = self._decayed(now)
        self._slow = slow + 1.0 / self.tau
        self._fast = fast + 1.0 / self._fast_tau
        self._t = now

    def observe_concurrency(self, n: int) -> None:
        """``n`` calls want a container of this key at once (busy ones, waiting ones and this
        one): kept as a peak that decays with the window, for :meth:`peak`."""
        now = time.monotonic()
        self._peak = max(float(n), self.peak(now))
        self._peak_t = now

    def peak(self, now: float | None = None) -> float:
        """The recent peak of calls wanting a container at once (decaying over ``window_s``)."""
        dt = (time.monotonic() if now is None else now) - self._peak_t
        return self._peak * math.exp(-dt / self.tau)

    def recent_calls(self, now: float | None = None) -> float:
        """About how many calls the last ``window_s`` saw (the slow average times its window)."""
        slow, _ = self._decayed(time.monotonic() if now is None else now)
        return slow * self.tau

    def expect(self, ttl_s: float) -> None:
        """A call is expected within ``ttl_s`` (a function version was just deployed)."""
        self._expected.append(time.monotonic() + ttl_s)

    def expected(self, now: float | None = None) -> int:
        """Expected calls still to come."""
        now = time.monotonic() if now is None else now
        while self._expected and self._expected[0] < now:
            self._expected.popleft()
        return len(self._expected)

    def arrived(self) -> None:
        """A call came: the oldest expectation is met."""
        if self._expected:
            self._expected.popleft()

    def observe_service(self, seconds: float) -> None:
        self.service_s = 0.8 * self.service_s + 0.2 * seconds if self._observed_service else seconds
        self._observed_service = True

    def observe_fill(self, seconds: float) -> None:
        self.fill_s = 0.8 * self.fill_s + 0.2 * seconds if self._observed_fill else seconds
        self._observed_fill = True
