"""What a pool holds (a warm container and how to talk to it) and how the pools are sized
(their configuration); the pools themselves are in ``pools/pool.py``."""

import time
from dataclasses import dataclass, field

from node_agent.containers.docker import Attached
from node_agent.pools.keys import Layer, PoolKey
from node_agent.wire.socket import SocketChannel
from node_agent.wire.stdio import HandlerSession


@dataclass
class WarmContainer:
    cid: str
    key: PoolKey
    attached: Attached
    reusable: bool
    session: HandlerSession | None = None
    shim: str | None = None  # warm-runtime: the runtime shim waiting in it (None: a shell)
    # a stem cell's socket, connected while it waits: the channel of a handler loaded in it
    # (its attach stream stays ``attached``'s until then; wire/socket.py)
    socket: SocketChannel | None = None
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    calls: int = 0


@dataclass
class PoolConfig:
    min_per_key: dict[PoolKey, int] = field(default_factory=dict)
    max_per_key: int = 8
    max_warm: int = 16
    idle_s: float = 300.0
    window_s: float = 30.0
    tick_s: float = 0.25
    # after a single-use container's call, wait this long before replacing and destroying it
    refill_delay_s: float = 0.02
    # containers being made at once, on the whole node (0: no limit)
    max_fills: int = 0
    # a function pool grows from demand only once its function has had this many calls in
    # the last window_s (0: from the first call); a promoted stem cell joins it regardless
    repeat_calls: float = 0.0
    # what an idle container of each layer is worth when the node is full: the time it
    # saves a call, relative (eviction keeps the containers that save the most per second)
    layer_saving: dict[Layer, float] = field(default_factory=lambda: {Layer.RUNTIME: 1.0, Layer.FUNCTION: 1.0})
