"""The pools' configuration as an agent's settings give it (what each policy keeps warm)."""

import os

from node_agent.pools.keys import Layer, PoolKey
from node_agent.pools.warmcontainer import PoolConfig
from node_agent.settings import AgentSettings


def pool_config(s: AgentSettings) -> PoolConfig:
    """warm-runtime keeps ``pool_min`` stem cells per runtime served; adaptive grows a
    function pool for repeat demand only (a first call is a stem cell's) and, at capacity,
    lets stem cells outlive function containers that spare less."""
    mins = {PoolKey.runtime(rt): s.pool_min for rt in s.runtimes} if s.policy == "warm-runtime" else {}
    config = PoolConfig(
        min_per_key=mins,
        max_per_key=s.pool_max,
        max_warm=s.max_warm,
        idle_s=s.pool_idle_s,
        window_s=s.demand_window_s,
        max_fills=s.pool_max_fills or os.cpu_count() or 2,
    )
    if s.policy == "adaptive":
        config.repeat_calls = s.repeat_calls
        config.layer_saving = {Layer.RUNTIME: 1.0, Layer.FUNCTION: s.function_layer_saving}
    return config
