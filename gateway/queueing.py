"""Putting a message on the invoke stream (calls and jobs alike).

The invoke stream discards NEW at its limits (common/jetstream.py ``LayoutLimits``): a publish
past them is refused by the stream, so nothing accepted is ever dropped; the caller gets a
503 ``queue_full`` with ``Retry-After`` and the gateway logs ``invoke.refused_full``.
"""

import logging

from nats.js.errors import APIError

from common.jspub import Publishes
from common.logs import fields
from gateway.errors import GatewayError, nats_unavailable
from schemas import Layout, dedup

log = logging.getLogger(__name__)

# JetStream's "store failed" error: on a discard-NEW stream, "maximum messages exceeded",
# "maximum bytes exceeded" (the stream is full).
_STORE_FAILED = 10077
RETRY_AFTER_S = 5


async def enqueue(
    js: Publishes,
    layout: Layout,
    subject: str,
    data: bytes,
    msg_id: str,
    what: str,
    headers: dict[str, str] | None = None,
    retry_after_s: int = RETRY_AFTER_S,
) -> int:
    """Publish with ``Nats-Msg-Id`` and one retry on a timeout; returns the stream sequence.

    A retry of a publish that did land is deduplicated by the stream and answered with the
    same sequence, so a call or job is never queued twice.
    """
    headers = {**(headers or {}), dedup.MSG_ID: msg_id}
    with nats_unavailable(f"queueing the {what}"):
        for attempt in (1, 2):
            try:
                ack = await js.publish(subject, data, stream=layout.invoke_stream, headers=headers)
                return int(ack.seq)
            except TimeoutError:
                if attempt == 2:
                    raise
            except APIError as err:
                if err.err_code == _STORE_FAILED:
                    raise queue_full(layout, subject, what, err.description or "", retry_after_s) from None
                raise GatewayError(
                    503, "unavailable", f"the {what} queue refused the {what}: {err.description}"
                ) from None
    raise AssertionError("unreachable")


def queue_full(layout: Layout, subject: str, what: str, why: str, retry_after_s: int) -> GatewayError:
    log.warning("invoke.refused_full", extra=fields(stream=layout.invoke_stream, subject=subject, what=what, why=why))
    return GatewayError(
        503,
        "queue_full",
        f"queue full: the {what} queue is at its limit ({why}); nothing was queued, retry later",
        {"Retry-After": str(retry_after_s)},
    )
