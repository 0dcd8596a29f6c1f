"""The node's nested calls: checked, then published as ordinary invocations.

A nested call is refused (an error to the calling handler, nothing published) when:

* the caller's registration does not allow it: its ``calls`` allow-list must name the callee
  (``CallNotAllowed``; a sequence's own steps are allowed);
* it would be deeper than ``max_depth`` in its tree (``CallDepthExceeded``);
* its tree has had ``max_tree_calls`` nested calls published from this node already
  (``CallTreeTooLarge``; counted per node: a tree spread over n nodes may reach n times
  that);
* the callee is not registered, or its params are over the callee's limit.

The invocation is published like the gateway's, on the callee's runtime subject with its
call id as message id, and announced by an ``accepted`` event, so that it runs and is
recorded exactly like any other call, with ``parent``, ``root``, ``depth`` and ``caller``.

A call that ends while children it waits for still run (cancelled, timed out, crashed) has
them cancelled as any client would, by a request on ``<prefix>.cancel.<id>`` (a gateway
answers it: queued, the child never runs; running, its node stops it, and so on down its
own subtree). Children started with ``spawn`` (fire and forget) are not waited for and run
on.
"""

import asyncio
import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from common.jspub import JsPublisher
from common.logs import fields
from node_agent.calls.catalog import Catalog
from node_agent.calls.slots import Slots
from node_agent.errors import AgentError
from node_agent.nested.parking import Parking
from node_agent.nested.waits import ChildWaits
from schemas import REPLY_TO, Accepted, FunctionRecord, Invocation, Layout, dedup, encode, encode_json

log = logging.getLogger(__name__)

# Trees whose nested calls this node counts (least recently active out first).
_TREES_KEPT = 10_000
# A cancel request for a child left running waits this long for a gateway's answer.
CANCEL_TIMEOUT_S = 5.0


class CallNotAllowed(AgentError):
    kind = "CallNotAllowed"


class CallDepthExceeded(AgentError):
    kind = "CallDepthExceeded"


class CallTreeTooLarge(AgentError):
    kind = "CallTreeTooLarge"


class CallNotQueued(AgentError):
    kind = "CallNotQueued"


@dataclass(frozen=True)
class NestedConfig:
    max_depth: int = 32
    max_tree_calls: int = 1000
    max_parked: int = 64
    # a child not answered on the reply subject within this long is looked up in the stream
    poll_s: float = 5.0


class NestedCalls:
    """``async with``-free: ``start()`` subscribes for the children's answers, ``stop()`` ends
    every wait (the agent stops its calls first)."""

    def __init__(
        self, nc: Client, js: JetStreamContext, layout: Layout, catalog: Catalog, slots: Slots, config: NestedConfig
    ) -> None:
        self._nc, self._layout, self._catalog = nc, layout, catalog
        self.config = config
        self._publisher = JsPublisher(nc)
        self.waits = ChildWaits(nc, js, layout, config.poll_s)
        self.parking = Parking(slots, config.max_parked)
        self._trees: OrderedDict[str, int] = OrderedDict()
        # cancel requests for children left running, until answered (stop waits for them)
        self._cancelling: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.waits.start()

    async def stop(self) -> None:
        if self._cancelling:
            await asyncio.wait(set(self._cancelling), timeout=CANCEL_TIMEOUT_S)
            for task in self._cancelling:
                task.cancel()
        await self.waits.stop()

    async def publish(
        self,
        parent_id: str,
        parent: Invocation,
        caller: FunctionRecord,
        function: str,
        params: Any,
        *,
        wait: bool,
        allowed: bool = False,
    ) -> str:
        """Check and publish one nested call of ``parent_id``; its call id. With ``wait``,
        its end is expected on :attr:`waits` (``waits.wait(id)``)."""
        if not allowed and function not in caller.calls:
            listed = ", ".join(caller.calls) or "none"
            raise CallNotAllowed(
                f"function {caller.name!r} may not call {function!r}: its calls allow-list names {listed}"
            )
        depth = parent.depth + 1
        if depth > self.config.max_depth:
            raise CallDepthExceeded(f"a nested call would be {depth} deep, over the maximum of {self.config.max_depth}")
        root = parent.root or parent_id
        count = self._trees.pop(root, 0)
        self._trees[root] = count
        if count >= self.config.max_tree_calls:
            raise CallTreeTooLarge(
                f"call tree {root} has made {count} nested calls on this node, the maximum (max_tree_calls)"
            )
        # Counted before the first await: calls of one tree are checked concurrently.
        self._trees[root] = count + 1
        while len(self._trees) > _TREES_KEPT:
            self._trees.popitem(last=False)
        try:
            return await self._publish(parent_id, root, depth, caller, function, params, wait)
        except AgentError:  # refused or not queued: it does not count
            if root in self._trees:
                self._trees[root] -= 1
            raise

    async def _publish(
        self, parent_id: str, root: str, depth: int, caller: FunctionRecord, function: str, params: Any, wait: bool
    ) -> str:
        callee = await self._catalog.latest(function)
        size = len(encode_json(params))
        if size > callee.limits.params_bytes:
            raise CallNotQueued(f"params are {size} bytes, over {function!r}'s limit of {callee.limits.params_bytes}")
        child = uuid.uuid4().hex
        now = datetime.now(UTC)
        inv = Invocation(
            id=child, function=function, version=callee.version, params=params, created_at=now,
            parent=parent_id, root=root, depth=depth, caller=caller.name,
        )  # fmt: skip
        headers = dedup.header(dedup.invocation(child))
        if wait:
            headers[REPLY_TO] = self.waits.reply_to(child)
            self.waits.expect(child)
        subject = self._layout.invoke_runtime(callee.runtime)
        try:
            ack = await self._publisher.publish(
                subject, encode(inv), stream=self._layout.invoke_stream, headers=headers
            )
        except Exception as err:  # a full queue, NATS away: the handler is told, nothing runs
            self.waits.forget(child)
            raise CallNotQueued(f"the call to {function!r} could not be queued: {err!r}") from None
        accepted = Accepted(
            call_id=child, number=int(ack.seq), at=now, function=function, version=callee.version,
            runtime=callee.runtime, params=params, parent=parent_id, root=root,
        )  # fmt: skip
        try:  # as the gateway's: not awaited for a PubAck, every later event carries the same
            await self._nc.publish(
                self._layout.event(child, "accepted"), encode(accepted), headers=dedup.header(dedup.accepted(child))
            )
        except Exception:
            log.warning("nested.accepted_publish_failed", extra=fields(call=child), exc_info=True)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "nested.call", extra=fields(call=child, parent=parent_id, root=root, function=function, depth=depth)
            )
        return child

    def children_left(self, parent_id: str, children: list[str]) -> None:
        """A call ended with nested calls it waited for still running: cancel each (nobody
        will read their results). Asked of the gateways as any client asks; not awaited by
        the ending call."""
        log.info("nested.children_cancelled", extra=fields(call=parent_id, children=len(children)))
        for child in children:
            task = asyncio.create_task(self._cancel(parent_id, child), name=f"nested:cancel:{child}")
            self._cancelling.add(task)
            task.add_done_callback(self._cancelling.discard)

    async def _cancel(self, parent_id: str, child: str) -> None:
        try:
            reply = await self._nc.request(self._layout.cancel(child), b"", timeout=CANCEL_TIMEOUT_S)
        except Exception as err:  # no gateway answered: the child runs to its end
            log.warning("nested.child_cancel_failed", extra=fields(call=child, parent=parent_id, error=repr(err)))
            return
        error = (reply.headers or {}).get("Nats-Service-Error-Code")
        if error and error != "409":  # 409: it had ended already
            log.warning("nested.child_cancel_refused", extra=fields(call=child, parent=parent_id, code=error))
