"""One invocation message, from delivery to its final event and ack.

decode -> look up function and runtime -> publish Started -> run -> publish Finished -> ack.
The ack comes only after the Finished event is stored in JetStream, so a call whose agent
dies is redelivered; while it runs, ``in_progress`` keeps it from being redelivered early.
A message that cannot be decoded, or that was delivered more than ``max_attempts`` times,
ends as an error right away (and so leaves the queue).
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.logs import fields
from node_agent.catalog import Catalog
from node_agent.errors import AgentError
from node_agent.executor import Executor
from node_agent.logstream import LogPublisher
from node_agent.outcome import Outcome, elapsed_ms, error_outcome
from node_agent.rescue import RESCUED_NUMBER
from schemas import CallStatus, ErrorInfo, Finished, InvalidMessage, Invocation, Layout, Started, decode, encode

log = logging.getLogger(__name__)


@dataclass
class _Call:
    id: str
    number: int
    attempt: int
    inv: Invocation
    version: int | None  # the invocation's pin until the function is resolved

    def fields(self, node: str) -> dict[str, Any]:
        """What every event of this call carries."""
        inv = self.inv
        return dict(
            call_id=self.id, number=self.number, function=inv.function, version=self.version,
            params=inv.params, node=node, attempt=self.attempt,
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
    ) -> None:
        self._nc, self._js, self._layout = nc, js, layout
        self._catalog, self._executor = catalog, executor
        self._node_id = node_id
        self._ack_wait_s = ack_wait_s
        self._max_attempts = max_attempts

    async def handle(self, msg: Msg) -> None:
        meta = msg.metadata
        # A call rescued from a dead node's subject keeps the number it was accepted with.
        rescued = (msg.headers or {}).get(RESCUED_NUMBER, "")
        number = int(rescued) if rescued.isdigit() else meta.sequence.stream
        try:
            inv = decode(Invocation, msg.data)
        except InvalidMessage as err:
            error = ErrorInfo(type="InvalidInvocation", message=f"invalid invocation: {err}")
            event = Finished(
                call_id=f"n{number}", number=number, status=CallStatus.ERROR, node=self._node_id, error=error
            )
            await self._finish(msg, event)
            return
        call = _Call(inv.id or f"n{number}", number, meta.num_delivered, inv, inv.version)
        if call.attempt > self._max_attempts:
            message = f"gave up after {self._max_attempts} attempts without completing"
            error = ErrorInfo(type="TooManyAttempts", message=message)
            await self._finish(msg, Finished(**call.fields(self._node_id), status=CallStatus.ERROR, error=error))
            return

        t0 = time.perf_counter()
        keepalive = asyncio.create_task(self._keep_alive(msg), name=f"keepalive:{call.id}")
        try:
            outcome, runtime = await self._run(msg, call)
        finally:
            keepalive.cancel()
        finished = Finished(
            **call.fields(self._node_id),
            runtime=runtime,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            exit_code=outcome.exit_code,
            container=outcome.container,
            duration_ms=elapsed_ms(t0),
            callback_url=inv.callback_url,
        )
        await self._finish(msg, finished)

    async def _run(self, msg: Msg, call: _Call) -> tuple[Outcome, str | None]:
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
                return error_outcome(AgentError(wrong)), runtime_name
            runtime = await self._catalog.runtime(function.runtime)
            # Not awaited for its PubAck (the stream still stores it): nothing depends on it
            # being durable, the Finished event carries everything the record needs.
            await self._nc.publish(
                self._layout.event(call.id, "started"),
                encode(Started(**call.fields(self._node_id), runtime=runtime.name)),
                headers={"Nats-Msg-Id": f"{call.id}.started.{call.attempt}"},
            )
            log.debug("call.started", extra=fields(call=call.id, number=call.number, attempt=call.attempt))
            logs = LogPublisher(
                self._js, self._layout, call.id, call.attempt, function.limits.log_bytes, number=call.number
            )
            async with logs:
                return await self._executor.run(runtime, function, call.inv, call.id, logs.write), runtime.name
        except AgentError as err:
            return error_outcome(err), runtime_name

    async def _keep_alive(self, msg: Msg) -> None:
        interval = max(self._ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            await msg.in_progress()

    async def _finish(self, msg: Msg, event: Finished) -> None:
        await self._js.publish(self._layout.event(event.call_id, "finished"), encode(event))
        # The Finished event is stored: a lost ack only means a redelivery, whose second
        # Finished the store ignores (the first final event wins).
        await msg.ack()
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
