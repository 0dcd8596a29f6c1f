"""Taking container jobs by priority: ten durable consumers, the highest waiting level first.

A job waits on ``<prefix>.invoke.job.<p>`` (p = 0..9) and is taken from the durable pull
consumer ``job_p<p>``, shared by every agent. To pick the highest priority without holding a
lingering pull request open on ten consumers (each would reserve a slot for a job that may
never come, and a low level could be served while a high one waits), the intake asks:

1. which levels hold messages: one ``STREAM.INFO`` request with a subjects filter, answered
   with a count per subject (idle cost: one request per poll for all levels);
2. from the highest such level down, a ``no_wait`` pull of one message: the server answers at
   once with the message or "404 No Messages" (the level's messages may all be running on
   other agents: a WorkQueue stream keeps them until they are acked).

Between polls the intake sleeps ``poll_s``, or less: a core subscription to the job subjects
wakes it as soon as a job is published. A redelivery (a job whose agent died) is picked up by
the next poll.
"""

import asyncio
import logging
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig

from common.lifecycle import wait_event
from common.logs import fields
from schemas import Layout
from schemas.codec import encode_json
from schemas.jobs import MAX_PRIORITY, MIN_PRIORITY

log = logging.getLogger(__name__)

_JS_API = "$JS.API"
_STATUS = "Status"


def levels_by_priority(subject_counts: dict[str, int] | None, layout: Layout) -> list[int]:
    """The priority levels that hold messages, highest first, from STREAM.INFO's subject counts."""
    levels = []
    for subject, count in (subject_counts or {}).items():
        head, _, level = subject.rpartition(".")
        if count <= 0 or not level.isdigit() or head != job_subjects(layout).removesuffix(".*"):
            continue
        p = int(level)
        if MIN_PRIORITY <= p <= MAX_PRIORITY:
            levels.append(p)
    return sorted(levels, reverse=True)


def job_subjects(layout: Layout) -> str:
    """Every priority level's subject: ``<prefix>.invoke.job.*``."""
    return layout.invoke_job(MIN_PRIORITY).rpartition(".")[0] + ".*"


class PriorityIntake:
    def __init__(
        self,
        nc: Client,
        layout: Layout,
        ack_wait_s: float,
        max_deliver: int,
        poll_s: float = 0.5,
        request_timeout_s: float = 5.0,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._layout = layout
        self._ack_wait_s = ack_wait_s
        self._max_deliver = max_deliver
        self.poll_s = poll_s
        self._timeout = request_timeout_s
        self._wake = asyncio.Event()
        self._wake_sub: Subscription | None = None

    async def setup(self) -> None:
        """Create (or update) the ten consumers and subscribe to job publications. Idempotent."""
        for p in range(MIN_PRIORITY, MAX_PRIORITY + 1):
            name = self._layout.job_consumer(p)
            await self._js.add_consumer(
                self._layout.invoke_stream,
                ConsumerConfig(
                    name=name,
                    durable_name=name,
                    description=f"container jobs of priority {p}",
                    filter_subject=self._layout.invoke_job(p),
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self._ack_wait_s,
                    max_deliver=self._max_deliver,
                    max_ack_pending=-1,
                ),
            )
        if self._wake_sub is None:

            async def on_publish(_: Msg) -> None:
                self._wake.set()

            self._wake_sub = await self._nc.subscribe(job_subjects(self._layout), cb=on_publish)

    async def close(self) -> None:
        sub, self._wake_sub = self._wake_sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection is closing: the subscription goes with it
                log.debug("jobs.wake.unsubscribe_failed", exc_info=True)

    async def waiting_levels(self) -> list[int]:
        """Levels holding jobs (queued, or running unacked on some agent), highest first."""
        info = await self._js.stream_info(self._layout.invoke_stream, subjects_filter=job_subjects(self._layout))
        return levels_by_priority(info.state.subjects, self._layout)

    async def take(self, levels: list[int]) -> Msg | None:
        """One job from the highest of ``levels`` that has one ready for delivery, or None."""
        for p in levels:
            msg = await self._next(p)
            if msg is not None:
                return msg
        return None

    async def wait_for_news(self, timeout: float | None = None) -> None:
        """Until a job is published or ``timeout`` (default ``poll_s``) has passed."""
        await wait_event(self._wake, self.poll_s if timeout is None else timeout)
        self._wake.clear()

    async def _next(self, priority: int) -> Msg | None:
        """A ``no_wait`` pull of one message. Its reply comes on the original subject, not the
        inbox, so ``nc.request`` cannot match it: a subscription of its own per pull."""
        consumer = self._layout.job_consumer(priority)
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, max_msgs=1)
        try:
            await self._nc.publish(
                f"{_JS_API}.CONSUMER.MSG.NEXT.{self._layout.invoke_stream}.{consumer}",
                encode_json({"batch": 1, "no_wait": True}),
                reply=inbox,
            )
            try:
                msg = await sub.next_msg(timeout=self._timeout)
            except TimeoutError:
                log.warning("jobs.pull.timeout", extra=fields(consumer=consumer))
                return None
        finally:
            await _unsubscribe(sub)
        status = _status(msg)
        if status is None:
            return msg
        if status != "404":  # 404: nothing ready on this level
            log.warning("jobs.pull.status", extra=fields(consumer=consumer, status=status))
        return None


def _status(msg: Msg) -> str | None:
    headers: dict[str, Any] = msg.headers or {}
    status = headers.get(_STATUS)
    return str(status) if status and not msg.data else None


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # already gone with max_msgs, or the connection is closing
        log.debug("jobs.pull.unsubscribe_failed", exc_info=True)
