"""Arrival patterns: when each call of an experiment is submitted (pure).

* ``sequential``: one client; each call is submitted when the previous one has answered
  (closed loop): no offsets.
* ``burst``: ``n`` calls submitted at the same instant.
* ``poisson``: ``n`` calls with exponential gaps of mean ``1/rate`` (open loop: a call is
  submitted at its time whether or not the earlier ones have answered).
"""

import random
from dataclasses import dataclass

PATTERNS = ("sequential", "burst", "poisson")


@dataclass(frozen=True)
class Schedule:
    pattern: str
    n: int
    # seconds after the start at which call i is submitted; None: closed loop (sequential)
    offsets: tuple[float, ...] | None

    @property
    def closed_loop(self) -> bool:
        return self.offsets is None


def burst_offsets(n: int) -> tuple[float, ...]:
    return (0.0,) * n


def poisson_offsets(n: int, rate: float, rng: random.Random) -> tuple[float, ...]:
    """Arrival times of a Poisson process of ``rate`` calls/s; the first call at 0."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    t, out = 0.0, []
    for i in range(n):
        if i:
            t += rng.expovariate(rate)
        out.append(t)
    return tuple(out)


def schedule(pattern: str, n: int, rate: float = 4.0, seed: int = 0) -> Schedule:
    if n < 0:
        raise ValueError("n must be >= 0")
    if pattern == "sequential":
        return Schedule(pattern, n, None)
    if pattern == "burst":
        return Schedule(pattern, n, burst_offsets(n))
    if pattern == "poisson":
        return Schedule(pattern, n, poisson_offsets(n, rate, random.Random(seed)))
    raise ValueError(f"unknown arrival pattern {pattern!r}; one of {', '.join(PATTERNS)}")
