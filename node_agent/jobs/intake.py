"""Taking container jobs by priority: ten durable consumers, the highest waiting level first.

A job waits on ``<prefix>.invoke.job.<p>`` (p = 0..9) and is taken from the durable pull
consumer ``job_p<p>``, shared by every agent. To pick the highest priority without holding a
lingering pull request open on ten consumers (each would reserve a slot for a job that may
never come, and a low level could be served while a high one waits), the intake asks:

1. which levels hold messages: one ``STREAM.INFO`` request with a subjects filter, answered
   with a count per subject (idle cost: one request per poll for all levels);
2. from the highest such level down, a ``no_wait`` pull of one message
   (``PullConsumer.next_now``): the server answers at once with the message or "404 No
   Messages" (the level's messages may all be running on other agents: a WorkQueue stream
   keeps them until they are acked).

Between polls the intake sleeps ``poll_s``, or less: a core subscription to the job subjects
wakes it as soon as a job is published. A redelivery (a job whose agent died) is picked up by
the next poll.
"""

import asyncio
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig

from common.lifecycle import wait_event
from common.pull import PullConsumer
from schemas import Layout
from schemas.jobs import MAX_PRIORITY, MIN_PRIORITY

log = logging.getLogger(__name__)


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
        self._pulls: dict[int, PullConsumer] = {}

    async def setup(self) -> None:
        """Create (or update) the ten consumers, bind a pull consumer to each and subscribe to
        job publications. Idempotent."""
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
            if p not in self._pulls:
                self._pulls[p] = await PullConsumer.bind(self._nc, self._layout.invoke_stream, name)
        if self._wake_sub is None:

            async def on_publish(_: Msg) -> None:
                self._wake.set()

            self._wake_sub = await self._nc.subscribe(job_subjects(self._layout), cb=on_publish)

    async def close(self) -> None:
        pulls, self._pulls = self._pulls, {}
        for pull in pulls.values():
            await pull.close()
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
        """One job from the highest of ``levels`` that has one ready for delivery, or None.

        Raises ``ConsumerGone`` when a level's consumer is gone (``setup`` makes it again)."""
        for p in levels:
            msg = await self._pulls[p].next_now(self._timeout)
            if msg is not None:
                return msg
        return None

    async def wait_for_news(self, timeout: float | None = None) -> None:
        """Until a job is published or ``timeout`` (default ``poll_s``) has passed."""
        await wait_event(self._wake, self.poll_s if timeout is None else timeout)
        self._wake.clear()
