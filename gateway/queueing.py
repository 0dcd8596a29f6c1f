"""Putting a message on the invoke stream (calls and jobs alike)."""

from nats.js.errors import APIError

from common.jspub import Publishes
from gateway.errors import GatewayError, nats_unavailable
from schemas import Layout, dedup


async def enqueue(
    js: Publishes,
    layout: Layout,
    subject: str,
    data: bytes,
    msg_id: str,
    what: str,
    headers: dict[str, str] | None = None,
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
                raise GatewayError(
                    503, "unavailable", f"the {what} queue refused the {what}: {err.description}"
                ) from None
    raise AssertionError("unreachable")
