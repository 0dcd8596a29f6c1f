"""One live agent per node id.

The node id names the agent's heartbeat, its routed-work subject, and the containers it may
clean up after a crash: two live agents sharing one would remove each other's containers.
At start, an agent whose id has a recent heartbeat waits until that heartbeat stops moving
(an earlier run that crashed) and refuses to start if it keeps moving (another live agent).
"""

import asyncio
import logging

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from common.logs import fields
from node_agent.errors import AgentError
from schemas import InvalidMessage, NodeState, decode

log = logging.getLogger(__name__)


class NodeIdInUse(AgentError):
    kind = "NodeIdInUse"


async def _last_beat(kv: KeyValue, node_id: str) -> int | None:
    try:
        entry = await kv.get(node_id)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    try:
        decode(NodeState, entry.value)
    except InvalidMessage:
        return None
    return entry.revision


async def claim_node_id(kv: KeyValue, node_id: str, heartbeat_s: float) -> None:
    first = await _last_beat(kv, node_id)
    if first is None:
        return
    log.info("agent.node_id_waiting", extra=fields(node=node_id))
    await asyncio.sleep(heartbeat_s * 2.5)
    if await _last_beat(kv, node_id) not in (first, None):
        raise NodeIdInUse(
            f"node id {node_id!r} is in use by another live agent: give this one its own FAAS_AGENT_NODE_ID"
        )
