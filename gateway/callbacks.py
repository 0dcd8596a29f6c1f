"""The callback dispatcher: a side task of every gateway that POSTs finished calls to their
``callback_url`` and records the outcome as a ``callback`` event.

The gateways share one durable pull consumer (``callbacks``) on
``<prefix>.events.*.callback_due``, where agents put a copy of the ``finished`` event of the
calls that have a callback URL (and only of those: the others cost the dispatcher nothing), so
each such call is handled by one of them. A delivery runs in its own task (at most ``concurrency`` at once, so one
slow URL never holds up the others), keeps its message alive while it retries, and acks it
after the ``callback`` event is stored. Delivery is at least once: a gateway that dies in the
middle leaves the message to another, which POSTs again (receivers dedupe on
``X-Faas-Call-Id``); a call whose ``callback`` event exists already is not POSTed again.
Every connection goes through the callback guard's resolver (:mod:`gateway.callback_guard`),
so a URL that was public when the call was made cannot reach an internal address now.

Redelivery is bounded: the consumer has ``max_deliver = max_dispatches + 1``. A dispatch that
ends without an outcome recorded (its gateway stopped or died, or the ``callback`` event could
not be published) is redelivered after the ack wait; the last delivery only records the end,
without POSTing: a ``callback`` event with a failed outcome saying so, logged as
``callback.gave_up`` (``callback.abandoned`` if even that cannot be recorded; the message is
then terminated).
"""

import asyncio
import logging
from collections import Counter

import aiohttp
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from common.events import Event, last_event
from common.lifecycle import TaskSet
from common.logs import fields
from common.pull import PullConsumer
from common.workitem import Delivery
from gateway.callback_guard import CallbackGuard, GuardedResolver
from gateway.callback_post import RetryPolicy, host_of, post_with_retries
from schemas import (
    Accepted,
    Callback,
    CallbackOutcome,
    CallRecord,
    Finished,
    InvalidMessage,
    Layout,
    Started,
    decode,
    dedup,
    encode,
)
from schemas.fold import RecordEvent, fold

log = logging.getLogger(__name__)

CONSUMER = "callbacks"
_FETCH_TIMEOUT_S = 1.0
_ERROR_BACKOFF_S = 1.0
_MAX_BATCH = 64


class CallbackDispatcher:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        layout: Layout,
        policy: RetryPolicy,
        concurrency: int = 32,
        ack_wait_s: float = 30.0,
        tasks: TaskSet | None = None,
        guard: CallbackGuard | None = None,
        max_dispatches: int = 5,
    ) -> None:
        self._nc = nc
        self._guard = guard or CallbackGuard()
        self._js = js
        self._layout = layout
        self._policy = policy
        self._concurrency = concurrency
        self._ack_wait_s = ack_wait_s
        self._max_dispatches = max_dispatches
        self.tasks = tasks or TaskSet("callbacks")
        self._deliveries = TaskSet("callbacks:deliveries")
        self._room = asyncio.Event()
        self._room.set()
        self._pull: PullConsumer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.Task[None] | None = None
        # Deliveries ended, by outcome (gateway/metrics.py: faas_callbacks_total).
        self.outcomes: Counter[str] = Counter()

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=CONSUMER,
            durable_name=CONSUMER,
            description="gateways: POST finished calls to their callback URL",
            filter_subject=self._layout.callbacks_due,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_ack_pending=10_000,
            # One delivery more than dispatches: the last one only records the give-up.
            max_deliver=self._max_dispatches + 1,
        )

    async def start(self) -> None:
        if self._loop is not None:
            return
        stream = self._layout.events_stream
        config = self.consumer_config()
        await self._js.add_consumer(stream, config)
        self._pull = await PullConsumer.bind(self._nc, stream, CONSUMER, _FETCH_TIMEOUT_S, config)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._guard))
        self._session = aiohttp.ClientSession(headers={"User-Agent": "faas-gateway"}, connector=connector)
        self._loop = self.tasks.spawn(self._run(), "callbacks")

    async def stop(self, grace_s: float) -> None:
        """Stop fetching; deliveries in flight get ``grace_s``, then are cancelled (their
        messages are not acked: another gateway delivers them)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self._pull is not None:
            # Fetched but not taken: handed back at once. Not settled: that would hold the stop
            # for up to the open request's expiry.
            await self._pull.close(settle=False)
        await self._deliveries.drain(grace_s)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        assert self._pull is not None
        while True:
            await self._room.wait()
            want = min(self._concurrency - len(self._deliveries), _MAX_BATCH)
            try:
                msgs = await self._pull.fetch(max(want, 1), timeout=_FETCH_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Loop boundary: NATS reconnecting, the consumer deleted... pause and go on.
                log.exception("callbacks.fetch_failed")
                await asyncio.sleep(_ERROR_BACKOFF_S)
                continue
            for msg in msgs:
                await self._take(msg)

    async def _take(self, msg: Msg) -> None:
        try:
            event = decode(Finished, msg.data)
        except InvalidMessage as err:
            log.warning("callbacks.event.invalid", extra=fields(subject=msg.subject, error=str(err)))
            await msg.term()
            return
        if not event.callback_url:
            await msg.ack()
            return
        d = Delivery(msg)
        work = (
            self._give_up(d, event, event.callback_url, gave_up)
            if (gave_up := d.exhausted(self._max_dispatches))
            else self._deliver(d, event, event.callback_url)
        )
        task = self._deliveries.spawn(work, f"callback:{event.call_id}", False)
        # Runs after the TaskSet's own done callback (registered first), which drops the task.
        task.add_done_callback(self._delivered)
        if len(self._deliveries) >= self._concurrency:
            self._room.clear()

    def _delivered(self, _: object) -> None:
        if len(self._deliveries) < self._concurrency:
            self._room.set()

    async def _deliver(self, d: Delivery, event: Finished, url: str) -> None:
        keepalive = d.keepalive(self._ack_wait_s, event.call_id).start()
        try:
            if await self._last(event.call_id, Callback) is not None:
                await d.msg.ack()  # handled already (a redelivered or duplicate finished event)
                return
            record = await self._record(event)
            headers = {
                "Content-Type": "application/json",
                "X-Faas-Call-Id": event.call_id,
                "X-Faas-Call-Status": event.status.value,
            }
            assert self._session is not None
            outcome = await post_with_retries(
                self._session, url, record.model_dump_json().encode(), headers, self._policy, self._guard
            )
            done = Callback(
                call_id=event.call_id,
                number=event.number,
                function=record.function,
                version=record.version,
                runtime=record.runtime,
                outcome=outcome,
            )
            await d.finish(
                self._js,
                self._layout.event(event.call_id, done.kind),
                encode(done),
                stream=self._layout.events_stream,
                headers=dedup.header(dedup.callback(event.call_id)),
            )
            refused = (outcome.error or "").startswith("refused")
            self.outcomes["delivered" if outcome.delivered else "refused" if refused else "failed"] += 1
            log.log(
                logging.INFO if outcome.delivered else logging.WARNING,
                "callback.delivered" if outcome.delivered else "callback.failed",
                extra=fields(
                    call=event.call_id,
                    host=host_of(url),
                    attempts=outcome.attempts,
                    status=outcome.status_code,
                    error=outcome.error,
                ),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked: redelivered after ack_wait, to this gateway or another.
            log.exception("callback.dispatch_failed", extra=fields(call=event.call_id))
        finally:
            await keepalive.stop()

    async def _give_up(self, d: Delivery, event: Finished, url: str, why: str) -> None:
        """The last delivery: record that no outcome was recorded in time, without a POST."""
        outcome = CallbackOutcome(
            url=url,
            delivered=False,
            attempts=0,
            error=f"{why.replace('attempts', 'dispatches')} (each ended before its outcome was recorded:"
            " the URL may have been called)",
        )
        try:
            if await self._last(event.call_id, Callback) is not None:
                await d.msg.ack()  # an earlier dispatch recorded it after all
                return
            done = Callback(call_id=event.call_id, number=event.number, function=event.function, outcome=outcome)
            await d.finish(
                self._js,
                self._layout.event(event.call_id, done.kind),
                encode(done),
                stream=self._layout.events_stream,
                headers=dedup.header(dedup.callback(event.call_id)),
            )
            self.outcomes["gave_up"] += 1
            log.error("callback.gave_up", extra=fields(call=event.call_id, host=host_of(url), deliveries=d.attempt))
        except asyncio.CancelledError:
            raise
        except Exception:
            # JetStream delivers it no more: the end is this log line.
            log.exception("callback.abandoned", extra=fields(call=event.call_id, host=host_of(url)))
            self.outcomes["abandoned"] += 1
            await d.msg.term()

    async def _record(self, fin: Finished) -> CallRecord:
        """The finished call as the sync invoke returns it: the fold of its events."""
        events: list[RecordEvent] = [fin]
        if (accepted := await self._last(fin.call_id, Accepted)) is not None:
            events.append(accepted)
        if (started := await self._last(fin.call_id, Started)) is not None:
            events.append(started)
        return fold(events)

    async def _last(self, call_id: str, model: type[Event]) -> Event | None:
        try:
            return await last_event(self._js, self._layout, call_id, model)
        except InvalidMessage:
            return None
