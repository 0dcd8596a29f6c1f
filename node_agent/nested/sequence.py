"""A sequence function: its steps called in turn by the agent, without a container.

Each step is a nested call of the sequence's call (recorded as its child); the result of one
is the params of the next, the last one's result is the sequence's. The first step that does
not end DONE ends the sequence with its error. The sequence waits parked (its slot free) for
the whole time, within the function's timeout.
"""

import asyncio

from node_agent.errors import AgentError
from node_agent.nested.calls import NestedCalls
from node_agent.outcome import Outcome, error_outcome, timeout_outcome
from schemas import CallStatus, ErrorInfo, FunctionRecord, Invocation


async def run_sequence(calls: NestedCalls, call_id: str, inv: Invocation, function: FunctionRecord) -> Outcome:
    assert function.sequence is not None
    timeout = min(inv.timeout_s or function.limits.timeout_s, function.limits.timeout_s)
    try:
        calls.parking.park()
    except AgentError as err:
        return error_outcome(err)
    parked = True
    try:
        params = inv.params
        async with asyncio.timeout(timeout):
            for i, step in enumerate(function.sequence, 1):
                child = await calls.publish(call_id, inv, function, step, params, wait=True, allowed=True)
                finished = await calls.waits.wait(child)
                if finished.status is not CallStatus.DONE:
                    error = finished.error or ErrorInfo(type=finished.status.value.title(), message="")
                    message = f"step {i} ({step}, call {child}) ended {finished.status.value}: {error.message}"
                    return Outcome(status=CallStatus.ERROR, error=ErrorInfo(type=error.type, message=message))
                params = finished.result
        await calls.parking.unpark()
        parked = False
        return Outcome(status=CallStatus.DONE, result=params)
    except TimeoutError:
        return timeout_outcome(timeout, None)
    except AgentError as err:
        return error_outcome(err)
    finally:
        if parked:
            calls.parking.abandon()
