"""Work routed to a node that died is not stranded.

The gateway publishes some calls on ``<prefix>.invoke.node.<node_id>`` (that node holds the
function warm). If the node's heartbeat is gone from the nodes bucket, any live agent moves
the messages waiting on that node's consumer (including delivered-but-unacked ones, once
their ack_wait passes) back to the function's runtime subject, keeping the call number,
then deletes the dead node's consumer once it is empty.
"""

import logging

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from common.logs import fields
from node_agent.calls.catalog import Catalog
from node_agent.errors import AgentError
from schemas import InvalidMessage, Invocation, Layout, decode, dedup

log = logging.getLogger(__name__)

RESCUED_NUMBER = "Faas-Call-Number"


async def _alive(nodes: KeyValue, node_id: str) -> bool:
    try:
        entry = await nodes.get(node_id)
    except KeyNotFoundError:
        return False
    return bool(entry.value)


async def rescue_dead_nodes(
    js: JetStreamContext, layout: Layout, nodes: KeyValue, catalog: Catalog, self_id: str, batch: int = 64
) -> int:
    moved = 0
    prefix = layout.node_consumer("")
    for info in await js.consumers_info(layout.invoke_stream):
        name = info.name
        if not name.startswith(prefix) or name == layout.node_consumer(self_id):
            continue
        node_id = name[len(prefix) :]
        if await _alive(nodes, node_id):
            continue
        if (info.num_pending or 0) + (info.num_ack_pending or 0) == 0:
            try:
                await js.delete_consumer(layout.invoke_stream, name)
            except NotFoundError:
                pass
            continue
        moved += await _move(js, layout, catalog, name, batch)
        if moved:
            log.warning("agent.rescued", extra=fields(dead_node=node_id, calls=moved))
    return moved


async def _move(js: JetStreamContext, layout: Layout, catalog: Catalog, durable: str, batch: int) -> int:
    sub = await js.pull_subscribe_bind(durable=durable, stream=layout.invoke_stream)
    moved = 0
    try:
        try:
            msgs = await sub.fetch(batch, timeout=0.5)
        except (NatsTimeout, TimeoutError):
            return 0
        for msg in msgs:
            number = (msg.headers or {}).get(RESCUED_NUMBER, str(msg.metadata.sequence.stream))
            try:
                inv = decode(Invocation, msg.data)
                runtime = (await catalog.function(inv.function, inv.version)).runtime
            except (InvalidMessage, AgentError):
                runtime = None
            if runtime is None:
                # Cannot tell where it belongs: any agent reports it as an error from here.
                await msg.term()
                continue
            headers = {RESCUED_NUMBER: number}
            if inv.id:
                headers[dedup.MSG_ID] = dedup.rescued(inv.id, msg.metadata.num_delivered)
            await js.publish(layout.invoke_runtime(runtime), msg.data, stream=layout.invoke_stream, headers=headers)
            await msg.ack_sync()
            moved += 1
    finally:
        await sub.unsubscribe()
    return moved
