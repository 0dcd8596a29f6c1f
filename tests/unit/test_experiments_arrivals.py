"""Arrival schedules of the experiments (pure)."""

import itertools
import random
import statistics

import pytest

from experiments.arrivals import burst_offsets, poisson_offsets, schedule
from experiments.workload import Workload


def test_sequential_is_a_closed_loop() -> None:
    s = schedule("sequential", 5)
    assert s.closed_loop and s.offsets is None and s.n == 5


def test_burst_submits_everything_at_once() -> None:
    s = schedule("burst", 4)
    assert s.offsets == (0.0, 0.0, 0.0, 0.0) and not s.closed_loop
    assert burst_offsets(0) == ()


def test_poisson_starts_at_zero_increases_and_has_the_asked_rate() -> None:
    offsets = poisson_offsets(5000, 4.0, random.Random(7))
    assert offsets[0] == 0.0
    assert all(b >= a for a, b in itertools.pairwise(offsets))
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.fmean(gaps) == pytest.approx(0.25, rel=0.05)
    # exponential gaps: the standard deviation equals the mean
    assert statistics.pstdev(gaps) == pytest.approx(0.25, rel=0.1)


def test_poisson_is_reproducible_by_seed() -> None:
    assert schedule("poisson", 10, 2.0, seed=3) == schedule("poisson", 10, 2.0, seed=3)
    assert schedule("poisson", 10, 2.0, seed=3) != schedule("poisson", 10, 2.0, seed=4)


@pytest.mark.parametrize(("pattern", "n", "rate"), [("zigzag", 3, 1.0), ("burst", -1, 1.0), ("poisson", 3, 0.0)])
def test_bad_schedules_are_refused(pattern: str, n: int, rate: float) -> None:
    with pytest.raises(ValueError):
        schedule(pattern, n, rate)


def test_workload_sizes_and_validation() -> None:
    w = Workload(functions=("py", "node"), sequential_calls=3, burst_size=2, poisson_calls=5)
    assert [w.schedule(p).n for p in ("sequential", "burst", "poisson")] == [3, 2, 5]
    assert w.calls_per_policy() == 2 * (3 + 2 + 5)
    assert w.schedule("poisson", salt=1) != w.schedule("poisson", salt=2)
    with pytest.raises(ValueError, match="unknown policy"):
        Workload(policies=("hot",))
    with pytest.raises(ValueError, match="unknown function"):
        Workload(functions=("cobol",))
    with pytest.raises(ValueError, match="unknown pattern"):
        Workload(patterns=("spiky",))
