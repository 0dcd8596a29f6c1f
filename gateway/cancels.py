"""Cancel requests, for calls and jobs alike: a key in the cancels bucket, and the final event
of what is cancelled while still queued.

A cancel is asked for with a key (the call's or job's id) in the cancels bucket: the node
agents check it before they start the item and watch it while it runs (node_agent/cancels.py),
so every gateway and every node agrees through NATS, whichever took part. An item still
queued is recorded ``CANCELLED`` at once by the gateway, with a final event published only if
the item has none yet (``Nats-Expected-Last-Subject-Sequence: 0`` on the item's final-event
subject): a final event that an agent stored first (the item ran and ended meanwhile) wins,
and the cancel answers what that event says.
"""

import logging

from nats.js import JetStreamContext
from nats.js.errors import APIError
from nats.js.kv import KeyValue

from common.logs import fields
from gateway.errors import GatewayError, nats_unavailable, not_found
from schemas import dedup
from schemas.status import Progress

log = logging.getLogger(__name__)

# Stored only if the subject holds no message yet.
EXPECT_NONE = {"Nats-Expected-Last-Subject-Sequence": "0"}
# JetStream's error for a publish whose expected last sequence did not match.
_WRONG_LAST_SEQUENCE = 10071


def conflict(kind: str, item_id: str, status: Progress) -> GatewayError:
    return GatewayError(409, "conflict", f"{kind} {item_id!r} has already ended ({status.value})")


class Cancels:
    def __init__(self, js: JetStreamContext, events_stream: str, kv: KeyValue) -> None:
        self._js = js
        self._events_stream = events_stream
        self._kv = kv

    async def request(self, kind: str, item_id: str, status: Progress | None) -> None:
        """Ask for ``item_id`` (a call or a job, ``kind``) to be cancelled, given the status it
        has now: 404 if None (unknown), 409 if it has ended."""
        if status is None:
            raise not_found(f"no {kind} {item_id!r}")
        if status.terminal:
            raise conflict(kind, item_id, status)
        with nats_unavailable("requesting the cancel"):
            await self._kv.put(item_id, b"cancel")
        log.info(f"{kind}.cancel_requested", extra=fields(item=item_id, status=status.value))

    async def record_cancelled(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Publish the final event (``data``) of an item cancelled while queued, unless
        ``subject`` holds a final event already; False then."""
        headers = {**dedup.header(msg_id), **EXPECT_NONE}
        with nats_unavailable("recording the cancel"):
            try:
                await self._js.publish(subject, data, stream=self._events_stream, headers=headers)
            except APIError as err:
                if err.err_code != _WRONG_LAST_SEQUENCE:
                    raise
                return False
        return True
