"""What an experiment runs: policies x functions x arrival patterns, and how many calls."""

from dataclasses import dataclass, field

from bench.functions import FUNCTIONS
from experiments.arrivals import PATTERNS, Schedule, schedule

POLICIES = ("none", "warm-runtime", "warm-function", "adaptive")
# Python and Node.js, with and without a dependency, all on the handler protocol (so that
# warm-function can keep them running); py-cmd and node-cmd are the command protocol.
DEFAULT_FUNCTIONS = ("py", "py-deps", "node", "node-deps")


@dataclass(frozen=True)
class Workload:
    policies: tuple[str, ...] = POLICIES
    functions: tuple[str, ...] = DEFAULT_FUNCTIONS
    patterns: tuple[str, ...] = PATTERNS
    sequential_calls: int = 10
    burst_size: int = 8
    poisson_calls: int = 20
    poisson_rate: float = 4.0  # calls/s
    seed: int = 1
    slots: int = 8
    # how long to wait for warm pools before a pattern (they follow demand)
    settle_s: float = 20.0
    agent_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in self.policies:
            if p not in POLICIES:
                raise ValueError(f"unknown policy {p!r}; one of {', '.join(POLICIES)}")
        for f in self.functions:
            if f not in FUNCTIONS:
                raise ValueError(f"unknown function {f!r}; one of {', '.join(FUNCTIONS)}")
        for p in self.patterns:
            if p not in PATTERNS:
                raise ValueError(f"unknown pattern {p!r}; one of {', '.join(PATTERNS)}")

    def schedule(self, pattern: str, salt: int = 0) -> Schedule:
        n = {"sequential": self.sequential_calls, "burst": self.burst_size, "poisson": self.poisson_calls}[pattern]
        return schedule(pattern, n, self.poisson_rate, self.seed + salt)

    def calls_per_policy(self) -> int:
        return len(self.functions) * sum(self.schedule(p).n for p in self.patterns)
