"""Cancelling a function call (``POST /v1/calls/{id}/cancel``, ``nats req <prefix>.cancel.<id>``).

The call's status is the store's record folded with the call's latest events (the store lags
the events stream by a batch; it may be down): unknown is 404, ended is 409. The request
itself is gateway/cancels.py's, as a job's: a key in the cancels bucket. A queued call is
recorded ``CANCELLED`` here at once (a ``finished`` event, unless one is stored already, and
its copy for the callback dispatcher when the call has a callback URL); the agent that takes
it later sees the key and only acks it. A running call is stopped by its agent, which
publishes the ``CANCELLED`` finished event (to a waiting sync caller too) once its container
is gone.
"""

import asyncio
import logging

from nats.js import JetStreamContext

from common.events import Event, last_event
from common.logs import fields
from gateway.cancels import Cancels, conflict
from gateway.errors import GatewayError, check_id, nats_unavailable
from gateway.store_client import StoreClient
from schemas import (
    Accepted,
    CallRecord,
    CallStatus,
    ErrorInfo,
    Finished,
    GetCall,
    InvalidMessage,
    Layout,
    Started,
    dedup,
    encode,
)
from schemas.fold import RecordEvent, merge

log = logging.getLogger(__name__)

CANCELLED_QUEUED = ErrorInfo(type="Cancelled", message="cancelled before it started")


class CallCancels:
    def __init__(self, js: JetStreamContext, layout: Layout, store: StoreClient, cancels: Cancels) -> None:
        self._js = js
        self._layout = layout
        self._store = store
        self._cancels = cancels

    async def cancel(self, call_id: str) -> CallStatus:
        """Ask for a call to be cancelled; returns the status it has now: CANCELLED at once if
        it was still queued, else RUNNING until its node has stopped it. 404 unknown, 409 ended."""
        check_id("call", call_id)
        record = await self._record(call_id)
        await self._cancels.request("call", call_id, record.status if record is not None else None)
        assert record is not None
        if record.status != CallStatus.QUEUED:
            return record.status
        event = Finished(
            call_id=call_id,
            number=record.number,
            status=CallStatus.CANCELLED,
            error=CANCELLED_QUEUED,
            function=record.function,
            version=record.version,
            runtime=record.runtime,
            callback_url=record.callback_url,
            created_at=record.created_at,
        )
        data = encode(event)
        if not await self._cancels.record_cancelled(
            self._layout.event(call_id, "finished"), data, dedup.call_cancelled(call_id)
        ):
            # It ended first (or another gateway recorded the cancel): what its final event says.
            first = await self._last(call_id, Finished)
            if first is not None and first.status == CallStatus.CANCELLED:
                return CallStatus.CANCELLED
            raise conflict("call", call_id, first.status if first is not None else CallStatus.ERROR)
        if event.callback_url:
            with nats_unavailable("handing the cancelled call to the callback dispatcher"):
                await self._js.publish(
                    self._layout.callback_due(call_id),
                    data,
                    stream=self._layout.events_stream,
                    headers=dedup.header(dedup.call_cancelled_callback(call_id)),
                )
        log.info("call.cancelled_queued", extra=fields(call=call_id, number=record.number))
        return CallStatus.CANCELLED

    async def _record(self, call_id: str) -> CallRecord | None:
        """The store's record, brought up to date with the call's latest events; None if
        neither knows the call."""
        record: CallRecord | None = None
        try:
            record = await self._store.get_call(GetCall(id=call_id))
        except GatewayError as err:
            if err.status != 404 and err.status < 500:
                raise
        if record is not None and record.status.terminal:
            return record
        events: tuple[RecordEvent | None, ...] = await asyncio.gather(
            self._last(call_id, Accepted), self._last(call_id, Started), self._last(call_id, Finished)
        )
        for event in events:
            if event is not None:
                record = merge(record, event)
        return record

    async def _last(self, call_id: str, model: type[Event]) -> Event | None:
        try:
            with nats_unavailable("reading the call's events"):
                return await last_event(self._js, self._layout, call_id, model)
        except InvalidMessage as err:
            if model is Finished:  # a final event nobody can read: ended all the same
                raise conflict("call", call_id, CallStatus.ERROR) from None
            log.warning("event.invalid", extra=fields(call=call_id, error=str(err)))
            return None
