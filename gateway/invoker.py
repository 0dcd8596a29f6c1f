"""Invoking a function: publish the invocation, announce it, optionally wait for it to finish.

The stream sequence of the invocation in the invoke stream is the call number. A sync
caller opens its :class:`CallWatch` *before* publishing, so a fast ``Finished`` is not missed.

An async call is announced (the ``accepted`` event: the store records it QUEUED) at once. A
sync call is announced only if it has not finished after ``announce_after_s``: a short call's
record is made from its ``finished`` event alone, which carries everything the accepted event
would have (what was called, params, created_at). Nothing is lost if this gateway dies before
announcing: the invocation is in the invoke stream, and its events are the agent's.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import ValidationError

from common.jspub import JsPublisher
from common.logs import fields
from gateway.call_watch import CallWatch, Replies
from gateway.errors import check_name, invalid, nats_unavailable, not_found, too_large
from gateway.functions import Functions
from gateway.queueing import enqueue
from gateway.routing import Claim, NodeRouter
from gateway.runtimes import Runtimes
from schemas import (
    REPLY_TO,
    Accepted,
    CallRecord,
    CallStatus,
    Finished,
    Invocation,
    Layout,
    Started,
    dedup,
    encode,
    encode_json,
)
from schemas.fold import RecordEvent, fold

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """What the gateway knows about a call it has just queued."""

    id: str
    number: int
    function: str
    version: int
    runtime: str
    params: Any
    created_at: datetime
    callback_url: str | None = None
    # what it took of the node it was routed to (gateway/routing.py)
    claim: Claim | None = None

    def queued(self, status: CallStatus = CallStatus.QUEUED) -> dict[str, Any]:
        return {"id": self.id, "number": self.number, "status": status.value}

    def accepted(self) -> Accepted:
        """The event that announces the call (published or not, the sync answer folds it)."""
        return Accepted(
            call_id=self.id,
            number=self.number,
            at=self.created_at,
            function=self.function,
            version=self.version,
            runtime=self.runtime,
            params=self.params,
            callback_url=self.callback_url,
        )


@dataclass
class Outcome:
    ticket: Ticket
    # None: the wait ran out (or the gateway is stopping); the call goes on.
    record: CallRecord | None
    status: CallStatus = CallStatus.QUEUED


class Invoker:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        layout: Layout,
        runtimes: Runtimes,
        functions: Functions,
        max_params_bytes: int,
        replies: Replies,
        poll_s: float = 1.0,
        router: "NodeRouter | None" = None,
        announce_after_s: float = 0.5,
        queue_full_retry_after_s: int = 5,
    ) -> None:
        self._nc = nc
        self._publisher = JsPublisher(nc)  # the invocations' PubAcks, lean (common/jspub.py)
        self._replies = replies
        self._announce_after_s = announce_after_s
        self._retry_after_s = queue_full_retry_after_s
        self._js = js
        self._layout = layout
        self._runtimes = runtimes
        self._functions = functions
        self._max_params_bytes = max_params_bytes
        self._poll_s = poll_s
        self._router = router
        self._watches: set[CallWatch] = set()
        self._stopping = False

    def stop_waiting(self) -> None:
        """Gateway stopping: every sync waiter answers now with "still running"; the calls go on."""
        self._stopping = True
        for watch in self._watches:
            watch.abandon()

    async def submit(
        self, function: str, params: Any, timeout_s: float | None = None, callback_url: str | None = None
    ) -> Ticket:
        """Queue a call and return at once."""
        ticket = await self._submit(function, params, timeout_s, watch=None, callback_url=callback_url)
        await self._announce(ticket)
        return ticket

    async def call(
        self,
        function: str,
        params: Any,
        wait_s: float,
        timeout_s: float | None = None,
        callback_url: str | None = None,
    ) -> Outcome:
        """Queue a call and wait up to ``wait_s`` for it to finish."""
        watch = CallWatch(self._replies, self._js, self._layout, uuid.uuid4().hex, self._poll_s)
        if self._stopping:
            watch.abandon()
        self._watches.add(watch)
        try:
            ticket = await self._submit(function, params, timeout_s, watch=watch, callback_url=callback_url)
            short = min(wait_s, self._announce_after_s)
            finished = await watch.wait_reply(short)
            if finished is None:
                await self._announce(ticket)
                finished = await watch.wait(max(0.0, wait_s - short))
            if finished is None:
                status = CallStatus.RUNNING if watch.started else CallStatus.QUEUED
                return Outcome(ticket, None, status)
            if self._router is not None:  # its container and slot are free again
                self._router.release(ticket.claim)
            return Outcome(ticket, _answer(ticket, watch.started, finished), finished.status)
        finally:
            self._watches.discard(watch)
            watch.close()

    async def _submit(
        self,
        function: str,
        params: Any,
        timeout_s: float | None,
        watch: CallWatch | None,
        callback_url: str | None = None,
    ) -> Ticket:
        check_name("function", function)
        size = len(encode_json(params))
        if size > self._max_params_bytes:
            raise too_large(f"params are {size} bytes, more than the limit of {self._max_params_bytes}")
        record = await self._functions.get(function)
        if await self._runtimes.find(record.runtime) is None:
            raise not_found(f"runtime {record.runtime!r} of function {function!r} is not registered")

        call_id = watch.call_id if watch is not None else uuid.uuid4().hex
        now = datetime.now(UTC)
        try:
            inv = Invocation(
                id=call_id,
                function=function,
                version=record.version,
                params=params,
                created_at=now,
                timeout_s=timeout_s,
                callback_url=callback_url,
            )
        except ValidationError as err:
            raise invalid(err, "invocation") from None

        if watch is not None:
            watch.open()
        subject, claim = (
            self._router.route(function, record.version, record.runtime)
            if self._router is not None
            else (self._layout.invoke_runtime(record.runtime), None)
        )
        reply_to = watch.reply_to if watch is not None else None
        with nats_unavailable("queueing the call"):
            number = await self._publish_invocation(inv, subject, reply_to)
        ticket = Ticket(call_id, number, function, record.version, record.runtime, params, now, callback_url, claim)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "call.accepted",
                extra=fields(
                    call=call_id,
                    number=number,
                    function=function,
                    version=record.version,
                    runtime=record.runtime,
                    sync=watch is not None,
                ),
            )
        return ticket

    async def _publish_invocation(self, inv: Invocation, subject: str, reply_to: str | None) -> int:
        assert inv.id is not None
        extra = {REPLY_TO: reply_to} if reply_to else None
        return await enqueue(
            self._publisher,
            self._layout,
            subject,
            encode(inv),
            dedup.invocation(inv.id),
            "call",
            extra,
            retry_after_s=self._retry_after_s,
        )

    async def _announce(self, t: Ticket) -> None:
        """The Accepted event; the call is queued already, so a failure here is logged, not raised."""
        event = t.accepted()
        # Not awaited for its PubAck: the invocation is durable already, and every later event
        # (started, finished) carries what the store needs to build the record without it.
        try:
            await self._nc.publish(
                self._layout.event(t.id, "accepted"), encode(event), headers=dedup.header(dedup.accepted(t.id))
            )
        except Exception:
            log.exception("call.accepted.publish_failed", extra=fields(call=t.id, number=t.number))


def _answer(t: Ticket, started: Started | None, finished: Finished) -> CallRecord:
    """The finished call as the store will record it: the fold of the events this gateway has."""
    events: list[RecordEvent] = [t.accepted(), finished] if started is None else [t.accepted(), started, finished]
    return fold(events)
