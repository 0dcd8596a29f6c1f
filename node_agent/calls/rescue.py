"""Work routed to a node that died is not stranded.

The gateway publishes some calls on ``<prefix>.invoke.node.<node_id>`` (that node holds the
function warm). If the node's heartbeat is gone from the nodes bucket, any live agent moves
the messages waiting on that node's consumer (including delivered-but-unacked ones, once
their ack_wait passes) back to the function's runtime subject, keeping the call number and
its count of attempts, then deletes the dead node's consumer once it is empty.

A message whose runtime cannot be told (an invocation that does not decode, a function that
is not registered) has nowhere to go: the call ends here as an error, with a ``finished``
event of status ERROR (and its ``callback_due`` copy for a call with a callback URL), and
then the message is acked.

Messages are taken one by one with no-wait pulls: nothing is left delivered to this agent
but not handled (handed back, it would count as one more delivery of the call).
"""

import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from common.logs import fields
from common.pull import ConsumerGone, PullConsumer
from common.workitem import PRIOR_ATTEMPTS, Delivery
from node_agent.calls.catalog import Catalog
from node_agent.errors import AgentError
from schemas import CallStatus, ErrorInfo, Finished, InvalidMessage, Invocation, Layout, decode, dedup, encode

log = logging.getLogger(__name__)

RESCUED_NUMBER = "Faas-Call-Number"
# How long a pull may go unanswered before the round gives up on it.
_PULL_TIMEOUT_S = 5.0


async def _alive(nodes: KeyValue, node_id: str) -> bool:
    try:
        entry = await nodes.get(node_id)
    except KeyNotFoundError:
        return False
    return bool(entry.value)


async def rescue_dead_nodes(
    nc: Client, layout: Layout, nodes: KeyValue, catalog: Catalog, self_id: str, batch: int = 64
) -> int:
    """Move up to ``batch`` messages of each dead node's consumer (ending the unroutable
    ones); returns how many were moved."""
    js = nc.jetstream()
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
        pull = await PullConsumer.bind(nc, layout.invoke_stream, name)
        count = await _Rescue(js, layout, catalog, node_id, self_id).run(pull, batch)
        if count:
            log.warning("agent.rescued", extra=fields(dead_node=node_id, calls=count))
        moved += count
    return moved


class _Rescue:
    """One dead node's consumer, one round."""

    def __init__(self, js: JetStreamContext, layout: Layout, catalog: Catalog, node_id: str, self_id: str) -> None:
        self._js = js
        self._layout = layout
        self._catalog = catalog
        self._node_id = node_id
        self._self_id = self_id

    async def run(self, pull: PullConsumer, batch: int) -> int:
        """Move up to ``batch`` messages, then close ``pull``."""
        moved = 0
        try:
            for _ in range(batch):
                msg = await pull.next_now(_PULL_TIMEOUT_S)
                if msg is None:
                    break
                moved += await self._move(Delivery(msg))
        except ConsumerGone:  # another agent emptied and deleted it meanwhile
            pass
        finally:
            await pull.close()
        return moved

    async def _move(self, d: Delivery) -> int:
        """Back to the runtime's subject (1), or ended as an error here (0)."""
        # A call keeps the number it was accepted with, however often it is moved.
        rescued = (d.msg.headers or {}).get(RESCUED_NUMBER, "")
        number = int(rescued) if rescued.isdigit() else d.sequence
        try:
            inv = decode(Invocation, d.msg.data)
        except InvalidMessage as err:
            await self._unroutable(d, number, None, ErrorInfo(type="InvalidInvocation", message=str(err)))
            return 0
        try:
            runtime = (await self._catalog.function(inv.function, inv.version)).runtime
        except AgentError as err:
            await self._unroutable(d, number, inv, ErrorInfo(type=err.kind, message=str(err)))
            return 0
        # The attempts so far go with it (this round's own pull is not one): a call that was
        # running on the dead node runs next as attempt 2, not 1 again.
        headers = {RESCUED_NUMBER: str(number), PRIOR_ATTEMPTS: str(d.attempt - 1)}
        if inv.id:
            headers[dedup.MSG_ID] = dedup.rescued(inv.id, d.attempt)
        await d.finish(
            self._js,
            self._layout.invoke_runtime(runtime),
            d.msg.data,
            stream=self._layout.invoke_stream,
            headers=headers,
            ack=Msg.ack_sync,
        )
        return 1

    async def _unroutable(self, d: Delivery, number: int, inv: Invocation | None, error: ErrorInfo) -> None:
        why = f"cannot run the call routed to node {self._node_id}, which is gone: {error.message}"
        error = ErrorInfo(type=error.type, message=why)
        call_id = (inv.id if inv else None) or f"n{number}"
        event = Finished(
            call_id=call_id,
            number=number,
            status=CallStatus.ERROR,
            error=error,
            node=self._self_id,
            attempt=d.attempt,
            function=inv.function if inv else None,
            version=inv.version if inv else None,
            params=inv.params if inv else None,
            callback_url=inv.callback_url if inv else None,
            created_at=inv.created_at if inv else None,
        )
        copies = (self._layout.callback_due(call_id),) if event.callback_url else ()
        await d.finish(
            self._js,
            self._layout.event(call_id, "finished"),
            encode(event),
            stream=self._layout.events_stream,
            headers=dedup.header(dedup.finished(call_id, d.attempt)),
            copies=copies,
            ack=Msg.ack_sync,
        )
        log.warning(
            "call.unroutable",
            extra=fields(call=call_id, number=number, dead_node=self._node_id, error=error.type),
        )
