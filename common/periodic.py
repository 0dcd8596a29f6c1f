"""A side task that does one step every so often and outlives a NATS outage.

The steps that keep a service's shared state fresh (an agent's heartbeat, its rescue of
dead nodes' work) talk to NATS; while NATS is away they fail (a timeout, "no responders"
while JetStream loads after a restart). That is a pause, not the end of the service: the
failure is logged (with its traceback the first time of a run of failures, then one line
each), the step is tried again at the next tick, and ``periodic.recovered`` is logged once
it succeeds again. Only a cancellation ends the loop.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common.logs import fields

log = logging.getLogger(__name__)


async def every(interval_s: float, step: Callable[[], Awaitable[object]], name: str, *, first_now: bool = True) -> None:
    """Run ``step`` every ``interval_s`` (at once first, unless ``first_now`` is False)
    until cancelled; a step that raises is retried at the next tick."""
    failures = 0
    if not first_now:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            failures += 1
            # Loop boundary: the traceback once per run of failures, not once per tick.
            log.warning(
                "periodic.failed",
                exc_info=failures == 1,
                extra=fields(task=name, failures=failures, error=repr(err)),
            )
        else:
            if failures:
                log.info("periodic.recovered", extra=fields(task=name, failures=failures))
                failures = 0
        if _cancel_swallowed():
            raise asyncio.CancelledError
        await asyncio.sleep(interval_s)


def _cancel_swallowed() -> bool:
    """A cancel that reached the step as its NATS reply came may have been swallowed by an
    ``asyncio.wait_for`` inside the client library (Python 3.11): the task is still being
    cancelled, and must end rather than sleep and step again."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
