"""Which pool a warm container belongs to, and which calls it may serve.

A pool is either a runtime's (empty containers of the runtime's image, given one
function's code and one call: warm-runtime) or one function version's (containers that
already hold the code and its dependencies: warm-function). A container never moves
between pools.
"""

from dataclasses import dataclass
from enum import StrEnum

from schemas import FunctionRecord, Limits, RuntimeSpec, function_key

DEFAULT_LIMITS = Limits()


class Layer(StrEnum):
    RUNTIME = "rt"
    FUNCTION = "fn"


@dataclass(frozen=True, slots=True)
class PoolKey:
    layer: Layer
    name: str  # the runtime's name, or the function's
    version: int | None = None  # the function's version (FUNCTION only)

    @classmethod
    def runtime(cls, name: str) -> "PoolKey":
        return cls(Layer.RUNTIME, name)

    @classmethod
    def function(cls, function: FunctionRecord) -> "PoolKey":
        return cls(Layer.FUNCTION, function.name, function.version)

    @property
    def label(self) -> str:
        """What a log line, a container label or a heartbeat calls this pool's contents:
        the runtime's name, or ``name@version``."""
        return self.name if self.version is None else function_key(self.name, self.version)

    def __str__(self) -> str:
        return f"{self.layer.value}:{self.label}"


def pool_keys(policy: str, runtime: RuntimeSpec, function: FunctionRecord) -> tuple[PoolKey | None, PoolKey | None]:
    """The pools a call of ``function`` may be served from under ``policy``: its own
    function pool (warm), then its runtime's stem cells (stem); None for a layer the policy
    does not use. With neither, the call runs cold."""
    stem = PoolKey.runtime(runtime.name) if warm_runtime_eligible(function) else None
    if policy == "warm-function":
        return PoolKey.function(function), None
    if policy == "warm-runtime":
        return None, stem
    if policy == "adaptive":
        return PoolKey.function(function), stem
    return None, None


def promotable(policy: str, function: FunctionRecord) -> bool:
    """Whether a stem cell whose shim loaded ``function``'s handler in-process stays as the
    function's own warm container after the call (adaptive: no second start)."""
    return policy == "adaptive" and function.handler is not None


def warm_runtime_eligible(function: FunctionRecord) -> bool:
    """A runtime's empty container can run the function: it needs no dependency image and
    no limits other than the defaults the container was made with."""
    lim = function.limits
    return not function.has_dependencies and (lim.memory_mb, lim.cpus, lim.pids, lim.network) == (
        DEFAULT_LIMITS.memory_mb,
        DEFAULT_LIMITS.cpus,
        DEFAULT_LIMITS.pids,
        DEFAULT_LIMITS.network,
    )


def reusable(key: PoolKey, function: FunctionRecord | None) -> bool:
    """Whether a pool container of ``key`` serves call after call: it holds ``function``
    (warm-function) loaded by its handler shim. Every other one serves one call."""
    return key.layer is Layer.FUNCTION and function is not None and function.handler is not None
