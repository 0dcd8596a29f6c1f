"""One invocation message, from delivery to its final event and ack.

decode -> look up function and runtime -> run -> reply + publish Finished -> ack.
The ack comes only after the Finished event is stored in JetStream, so a call whose agent
dies is redelivered; while it runs, ``in_progress`` keeps it from being redelivered early.
A message that cannot be decoded, or that was delivered more than ``max_attempts`` times,
ends as an error right away (and so leaves the queue).

Fewer events for short calls: ``Started`` is published only when the call is still running
after ``started_after_s`` (its ``at`` is still when it started); the Finished event carries
``created_at`` and ``started_at`` so that the store can record a short call from it alone.
An invocation with a ``Faas-Reply-To`` header (a waiting gateway) also gets the Finished
event on that subject over core NATS, before the durable publish: the caller's answer does
not wait for the events stream.

Cancel (with the node's :class:`~node_agent.cancels.CancelWatch`): a call is registered
before its cancel key is checked. Cancelled before it runs, it never runs: it is acked, with
a ``CANCELLED`` Finished unless one is stored already (the gateway's, for a queued call). A
cancel while the executor runs interrupts it (the task is cancelled, then uncancelled here):
the executor's own teardown stops the container (a cold one is removed, a warm one destroyed
by its pool, never returned to it), the output read so far is published, and the call ends
``CANCELLED``. A cancel of the agent's own task (a stop) is told apart and still propagates.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.events import last_event
from common.jetstream import LayoutLimits
from common.jspub import JsPublisher
from common.logs import fields
from common.workitem import Ack, Delivery
from node_agent.calls.catalog import Catalog
from node_agent.calls.executor import Executor
from node_agent.calls.fit import event_budget, fit_finished
from node_agent.calls.rescue import RESCUED_NUMBER
from node_agent.cancels import CancelWatch
from node_agent.errors import AgentError
from node_agent.logstream import LogPublisher
from node_agent.nested.calls import NestedCalls
from node_agent.nested.scope import CallScope
from node_agent.nested.sequence import run_sequence
from node_agent.outcome import Outcome, cancelled_outcome, elapsed_ms, error_outcome
from node_agent.wire.stdio import OnLog
from schemas import (
    REPLY_PREFIX,
    REPLY_TO,
    CallStatus,
    ErrorInfo,
    Finished,
    FunctionRecord,
    InvalidMessage,
    Invocation,
    Layout,
    RuntimeSpec,
    Started,
    decode,
    dedup,
    encode,
)
from schemas.clock import utcnow

log = logging.getLogger(__name__)


@dataclass
class _Call:
    id: str
    number: int
    attempt: int
    inv: Invocation
    version: int | None  # the invocation's pin until the function is resolved
    started_at: datetime | None = None
    # Its started event was published (it carries the params).
    announced: bool = False
    # A cancel request was seen; while the executor runs, ``task`` is what it interrupts.
    cancelled: bool = False
    task: "asyncio.Task[Any] | None" = None

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.task is not None:
                self.task.cancel()

    def fields(self, node: str) -> dict[str, Any]:
        """What every event of this call carries."""
        inv = self.inv
        return dict(
            call_id=self.id, number=self.number, function=inv.function, version=self.version,
            params=inv.params, node=node, attempt=self.attempt, parent=inv.parent, root=inv.root,
        )  # fmt: skip


class CallRunner:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        layout: Layout,
        catalog: Catalog,
        executor: Executor,
        node_id: str,
        ack_wait_s: float,
        max_attempts: int,
        started_after_s: float = 0.0,
        patience_s: float = 0.0,
        on_finished: Callable[[Finished], None] | None = None,
        cancels: CancelWatch | None = None,
        nested: NestedCalls | None = None,
    ) -> None:
        """``on_finished``: told of each call's final event once it is stored (the metrics)."""
        self._nc, self._js, self._layout = nc, js, layout
        self._publisher = JsPublisher(nc)  # the Finished events' PubAcks, lean (common/jspub.py)
        self._catalog, self._executor = catalog, executor
        self._node_id = node_id
        self._ack_wait_s = ack_wait_s
        self._max_attempts = max_attempts
        self._started_after_s = started_after_s
        # How long a finished call waits for NATS to take its event (an outage is a pause).
        self._patience_s = patience_s
        # The largest finished event the server and the events stream take (calls/fit.py).
        self._event_bytes = event_budget(nc.max_payload, LayoutLimits.max_msg_size)
        self._on_finished = on_finished
        # cancel requests (None: calls are not cancellable, as in some tests)
        self._cancels = cancels
        # calls made by calls (node_agent/nested); None: a handler's faas.call is refused
        self._nested = nested
        # side tasks (a late Started): referenced until done
        self._side: set[asyncio.Task[None]] = set()

    async def handle(self, msg: Msg, ack: Ack | None = None) -> None:
        """Run one delivered invocation to its Finished event; ``ack`` (default ``msg.ack``)
        is awaited once that event is stored."""
        d = Delivery(msg)
        headers = msg.headers or {}
        # A call rescued from a dead node's subject keeps the number it was accepted with.
        rescued = headers.get(RESCUED_NUMBER, "")
        number = int(rescued) if rescued.isdigit() else d.sequence
        reply_to = _reply_subject(headers.get(REPLY_TO))
        try:
            inv = decode(Invocation, msg.data)
        except InvalidMessage as err:
            error = ErrorInfo(type="InvalidInvocation", message=f"invalid invocation: {err}")
            event = Finished(
                call_id=f"n{number}", number=number, status=CallStatus.ERROR, node=self._node_id, error=error
            )
            await self._finish(d, event, reply_to, ack)
            return
        call = _Call(inv.id or f"n{number}", number, d.attempt, inv, inv.version)
        gave_up = d.exhausted(self._max_attempts)
        if gave_up is not None:
            error = ErrorInfo(type="TooManyAttempts", message=gave_up)
            event = Finished(
                **call.fields(self._node_id), status=CallStatus.ERROR, error=error, created_at=inv.created_at
            )
            await self._finish(d, event, reply_to, ack)
            return

        with self._watching(call):
            if await self._cancel_requested(call):
                await self._cancel_queued(d, call, reply_to, ack)
                return
            t0 = time.perf_counter()
            async with d.keepalive(self._ack_wait_s, call.id):
                outcome, runtime, announce = await self._run(msg, call)
        if announce is not None:
            announce.cancel()
        finished = Finished(
            **call.fields(self._node_id),
            runtime=runtime,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            exit_code=outcome.exit_code,
            container=outcome.container,
            served=outcome.served,
            duration_ms=elapsed_ms(t0),
            callback_url=inv.callback_url,
            created_at=inv.created_at,
            started_at=call.started_at,
        )
        await self._finish(d, finished, reply_to, ack, call)

    async def _run(self, msg: Msg, call: _Call) -> tuple[Outcome, str | None, asyncio.TimerHandle | None]:
        # Routed work (this node's subject) may be of any runtime; the rest must match.
        routed = msg.subject == self._layout.invoke_node(self._node_id)
        runtime_name = msg.subject.rsplit(".", 1)[-1]
        try:
            function = await self._catalog.function(call.inv.function, call.version)
            call.version = function.version
            if routed:
                runtime_name = function.runtime
            if function.runtime != runtime_name:
                wrong = f"function {function.name!r} belongs to runtime {function.runtime!r}, not {runtime_name!r}"
                return error_outcome(AgentError(wrong)), runtime_name, None
            runtime = await self._catalog.runtime(function.runtime)
            call.started_at = utcnow()
            announce = None
            if self._started_after_s > 0:  # the event is built only if the call runs that long
                loop = asyncio.get_running_loop()
                announce = loop.call_later(self._started_after_s, self._announce_soon, call, runtime.name)
            else:
                await self._announce(self._started(call, runtime.name))
                call.announced = True
            logs = LogPublisher(
                self._js, self._layout, call.id, call.attempt, function.limits.log_bytes, number=call.number
            )
            async with logs:
                outcome = await self._execute(call, runtime, function, logs.write)
            return outcome, runtime.name, announce
        except AgentError as err:
            return error_outcome(err), runtime_name, None

    async def _execute(self, call: _Call, runtime: RuntimeSpec, function: FunctionRecord, on_log: OnLog) -> Outcome:
        """The run (:meth:`_contained`), unless a cancel request comes first or meanwhile."""
        if call.cancelled:  # while the function was being looked up
            return cancelled_outcome(while_running=False)
        task = call.task = asyncio.current_task()
        assert task is not None
        try:
            outcome = await self._contained(call, runtime, function, on_log)
        except asyncio.CancelledError:
            # Ours (the cancel request) and nobody else's: the call ends CANCELLED. The
            # executor's teardown has run on the way out (container removed or destroyed).
            if not call.cancelled or task.uncancel() > 0:
                raise
            log.info("call.cancelled", extra=fields(call=call.id, number=call.number, node=self._node_id))
            return cancelled_outcome(while_running=True)
        finally:
            call.task = None
        if call.cancelled and task.cancelling():
            task.uncancel()  # the request met the run's end and was swallowed there: the run's outcome stands
        return outcome

    async def _contained(self, call: _Call, runtime: RuntimeSpec, function: FunctionRecord, on_log: OnLog) -> Outcome:
        """In a container (the executor), with its nested calls; a sequence by its steps."""
        nested = self._nested
        if function.sequence is not None:
            if nested is None:
                return error_outcome(AgentError("this node runs no sequences (nested calls are off)"))
            return await run_sequence(nested, call.id, call.inv, function)
        if nested is None:
            return await self._executor.run(runtime, function, call.inv, call.id, on_log)
        scope = CallScope(nested, call.id, call.inv, function)
        try:
            return await self._executor.run(runtime, function, call.inv, call.id, on_log, scope.on_call)
        finally:
            await scope.close()

    def _watching(self, call: _Call) -> AbstractContextManager[None]:
        if self._cancels is None:
            return contextlib.nullcontext()
        return self._cancels.watching(call.id, call.cancel)

    async def _cancel_requested(self, call: _Call) -> bool:
        if self._cancels is None:
            return False
        return call.cancelled or await self._cancels.requested(call.id) or call.cancelled

    async def _cancel_queued(self, d: Delivery, call: _Call, reply_to: str | None, ack: Ack | None) -> None:
        """Cancelled before it started: it never runs. The gateway has recorded it CANCELLED
        if its record said QUEUED; else (a cancel seen first here, or a cancelled call
        redelivered after its node died) its final event is published here."""
        try:
            stored = await last_event(self._js, self._layout, call.id, Finished)
        except InvalidMessage:
            stored = None
            ended = True  # a final event nobody can read: the call has ended all the same
        else:
            ended = stored is not None
        log.info("call.cancelled_queued", extra=fields(call=call.id, number=call.number, node=self._node_id))
        if not ended:
            c = cancelled_outcome(while_running=False)
            inv = call.inv
            event = Finished(
                **call.fields(self._node_id),
                status=c.status,
                error=c.error,
                callback_url=inv.callback_url,
                created_at=inv.created_at,
            )
            await self._finish(d, event, reply_to, ack)
            return
        if reply_to and stored is not None:  # a waiting caller answers now, not at its next poll
            try:
                await self._nc.publish(reply_to, encode(stored))
            except Exception:
                log.warning("call.reply_failed", extra=fields(call=call.id), exc_info=True)
        await (d.msg.ack() if ack is None else ack(d.msg))

    def _started(self, call: _Call, runtime: str) -> Started:
        return Started(**call.fields(self._node_id), runtime=runtime, at=call.started_at)

    def _announce_soon(self, call: _Call, runtime: str) -> None:
        call.announced = True
        self._spawn(self._announce(self._started(call, runtime)), f"started:{call.id}")

    async def _announce(self, started: Started) -> None:
        # Not awaited for its PubAck (the stream still stores it): nothing depends on it
        # being durable, the Finished event carries everything the record needs.
        try:
            await self._nc.publish(
                self._layout.event(started.call_id, "started"),
                encode(started),
                headers=dedup.header(dedup.started(started.call_id, started.attempt)),
            )
        except Exception:
            log.warning("call.started.publish_failed", extra=fields(call=started.call_id), exc_info=True)
        log.debug("call.started", extra=fields(call=started.call_id, attempt=started.attempt))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _finish(
        self, d: Delivery, event: Finished, reply_to: str | None, ack: Ack | None, call: _Call | None = None
    ) -> None:
        fitted = fit_finished(event, self._event_bytes)
        data, event = fitted.data, fitted.event
        if fitted.params_dropped and call is not None and not call.announced and call.started_at is not None:
            # Too large to echo beside the result: the started event carries them to the
            # record (a call published by hand has no accepted event).
            await self._announce(self._started(call, event.runtime or ""))
        if reply_to:
            try:
                await self._nc.publish(reply_to, data)
            except Exception:  # the waiter also reads the events stream
                log.warning("call.reply_failed", extra=fields(call=event.call_id), exc_info=True)
        # No message id: a lost ack only means a redelivery, whose second Finished the store
        # ignores (the first final event wins).
        copies = (self._layout.callback_due(event.call_id),) if event.callback_url else ()
        subject = self._layout.event(event.call_id, "finished")
        await d.finish(self._publisher, subject, data, copies=copies, ack=ack, patience_s=self._patience_s)
        if self._on_finished is not None:
            self._on_finished(event)
        (log.debug if event.status == CallStatus.DONE else log.info)(
            "call.finished",
            extra=fields(
                call=event.call_id,
                number=event.number,
                status=event.status.value,
                ms=event.duration_ms,
                error=event.error.type if event.error else None,
            ),
        )


_SPACE = re.compile(r"\s")


def _reply_subject(value: str | None) -> str | None:
    """A header any publisher can set: only a plain subject (no wildcard, no empty token) in
    the reply namespace, so that a publisher cannot make the agent publish a finished event
    to ``$JS.API.STREAM.DELETE.…`` or another service's subject. (The agent's NATS user may
    not publish there either; this keeps the attempt out of the connection's errors.)"""
    if not value:
        return None
    if (
        len(value) > 256
        or not value.startswith(REPLY_PREFIX)
        or _SPACE.search(value)
        or any(not t or t in ("*", ">") for t in value.split("."))
    ):
        log.warning("call.bad_reply_subject", extra=fields(value=value[:80]))
        return None
    return value
