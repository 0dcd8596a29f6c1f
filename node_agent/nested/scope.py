"""One running call's nested calls, answered over its protocol channel.

Each ``faas.call`` line of the handler becomes a task of the scope: check and publish the
child (node_agent/nested/calls.py), then, for a call that waits, wait for the child's end
and answer with its result or error. While at least one child is waited for, the call is
parked (its slot free, node_agent/nested/parking.py); it takes a slot again before the last
answer is written, so the handler goes on with a slot. When the call ends (cancelled, timed
out, crashed) while children it waits for still run, the waits are dropped and those
children are cancelled (:meth:`NestedCalls.children_left`), and theirs in turn.
"""

import asyncio
import logging

from common.logs import fields
from node_agent.errors import AgentError
from node_agent.nested.calls import NestedCalls
from node_agent.wire.stdio import CallResult, HandlerCall, HandlerError, Send
from schemas import CallStatus, Finished, FunctionRecord, Invocation

log = logging.getLogger(__name__)

# What of a child's error message reaches its parent (a deep tree's tracebacks add up).
MESSAGE_CHARS = 4000


class CallScope:
    def __init__(self, calls: NestedCalls, call_id: str, inv: Invocation, function: FunctionRecord) -> None:
        self._calls = calls
        self.call_id, self._inv, self._function = call_id, inv, function
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0  # children waited for now
        self.parked = False
        self._unparking = asyncio.Lock()
        self._open: set[str] = set()  # children waited for, not finished

    def on_call(self, request: HandlerCall, send: Send) -> None:
        """A nested call line from the handler (does not block the session's reading)."""
        task = asyncio.create_task(self._serve(request, send), name=f"nested:{self.call_id}:{request.ref}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: HandlerCall, send: Send) -> None:
        try:
            answer = await self._answer(request)
        except AgentError as err:
            answer = CallResult(ref=request.ref, ok=False, error=HandlerError(type=err.kind, message=str(err)))
        except Exception as err:  # a task's boundary: the handler gets an answer whatever happens
            log.exception("nested.call_failed", extra=fields(call=self.call_id, function=request.function))
            answer = CallResult(ref=request.ref, ok=False, error=HandlerError(type="AgentError", message=repr(err)))
        try:
            await send(answer.line())
        except AgentError:  # the container is gone: its call ends with that
            log.debug("nested.answer_undelivered", extra=fields(call=self.call_id))

    async def _answer(self, request: HandlerCall) -> CallResult:
        calls = self._calls
        what = (self.call_id, self._inv, self._function, request.function, request.params)
        if not request.wait:
            return CallResult(ref=request.ref, ok=True, id=await calls.publish(*what, wait=False))
        self._enter()
        try:
            child = await calls.publish(*what, wait=True)
            self._open.add(child)
            finished = await calls.waits.wait(child)
            self._open.discard(child)
        finally:
            await self._leave()
        return answer_of(request.ref, child, finished)

    def _enter(self) -> None:
        self._waiting += 1
        if self._waiting == 1 and not self.parked:
            try:
                self._calls.parking.park()
            except AgentError:
                self._waiting -= 1
                raise
            self.parked = True

    async def _leave(self) -> None:
        self._waiting -= 1
        if self._waiting == 0 and self.parked:
            async with self._unparking:
                if self._waiting == 0 and self.parked:
                    await self._calls.parking.unpark()
                    self.parked = False

    async def close(self) -> None:
        """The call ended: open waits are dropped, a parked slot forfeited (the runner's
        release at the end is then none)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.parked:
            self._calls.parking.abandon()
            self.parked = False
        if self._open:
            self._calls.children_left(self.call_id, sorted(self._open))


def answer_of(ref: int, child: str, finished: Finished) -> CallResult:
    """A child's ``finished`` event as the handler's answer."""
    if finished.status is CallStatus.DONE:
        return CallResult(ref=ref, ok=True, id=child, result=finished.result)
    if finished.error is not None:
        error = HandlerError(type=finished.error.type, message=finished.error.message[:MESSAGE_CHARS])
    else:
        error = HandlerError(type=finished.status.value.title(), message=f"the call ended {finished.status.value}")
    return CallResult(ref=ref, ok=False, id=child, error=error)
