"""One message from a durable pull consumer by a long poll that can be withdrawn.

A node agent serves many subjects (one per runtime) with a few slots. A pull request that
reserves a slot while it waits makes a call on a subject whose loop holds no slot wait for
another's request to expire (seconds, with more subjects than slots). So the agent keeps a
request open on every subject while it has a free slot, none reserved, and withdraws them
all once its last slot is taken: the server drops a waiting pull request whose reply subject
nobody listens to any more (nats-server checks interest before it delivers).

Withdrawing is exact: the unsubscribe is sent first while the subscription stays in the
client, then a flush (a round trip): whatever the server delivered before it dropped the
request is then in the subscription's queue and is returned, never lost. Only such a
delivery, made in the instant the last slot was taken, can exceed the free slots; the caller
keeps it alive until a slot frees (node_agent/calls/intake.py).

nats-py has no public call for "unsubscribe but keep what is queued" (``unsubscribe``
discards it): this module alone uses the subscription's queue and sid (nats-py 2.x).
"""

import asyncio
import logging

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

from common.logs import fields
from common.pull import ConsumerGone

log = logging.getLogger(__name__)

# A request that neither delivered nor ended with a status this long after it expired was
# lost (a reconnect in between).
LOST_AFTER_S = 1.0
# Statuses that end a request with nothing: no message (404), expired (408).
_NOTHING = ("404", "408")
_HEARTBEAT = "100"
# The round trip that confirms a withdrawal (whole seconds: nats-py).
_FLUSH_S = 5


async def poll_one(nc: Client, next_subject: str, expires_s: float, withdraw: "asyncio.Future[None]") -> Msg | None:
    """A message delivered within ``expires_s``, else None; None at once too when
    ``withdraw`` is done or becomes done while waiting, unless a message came meanwhile.
    Cancelled, it hands back (nak) a message that came meanwhile: it was not started.

    Raises :class:`ConsumerGone` when the consumer no longer answers (deleted, no stream).
    """
    if withdraw.done():
        return None
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)  # no callback: deliveries wait in its queue
    queue: asyncio.Queue[Msg] = sub._pending_queue
    msg: Msg | None = None
    late: Msg | None = None
    ended = False  # the request ended (a delivery or a status): nothing more can come
    returning = False
    try:
        await nc.publish(next_subject, b'{"batch":1,"expires":%d}' % int(expires_s * 1e9), reply=inbox)
        msg, ended = await _first(queue, withdraw, expires_s + LOST_AFTER_S, next_subject)
        returning = True
    finally:
        if not ended:
            late = await _withdraw(nc, sub._id, queue)
        await _unsubscribe(sub)
        if late is not None and not returning:
            await late.nak()  # cancelled or failed: not started, back to the queue at once
            late = None
    # Delivered as it was withdrawn: the caller's all the same.
    return msg if msg is not None else late


async def _first(
    queue: "asyncio.Queue[Msg]", withdraw: "asyncio.Future[None]", wait_s: float, next_subject: str
) -> tuple[Msg | None, bool]:
    """The request's delivery, or None (and whether the request ended)."""
    getter: asyncio.Future[Msg] = asyncio.ensure_future(queue.get())
    try:
        while True:
            done, _ = await asyncio.wait((getter, withdraw), timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                return None, False  # withdrawn, or lost in a reconnect
            msg = getter.result()
            status = (msg.headers or {}).get(Header.STATUS, "")
            if not status:
                return msg, True
            if status != _HEARTBEAT:
                _check_status(msg, status, next_subject)
                return None, True
            getter = asyncio.ensure_future(queue.get())
    finally:
        # A get cancelled as its item came leaves the item in the queue (_withdraw takes it).
        getter.cancel()


def _check_status(msg: Msg, status: str, next_subject: str) -> None:
    if status in _NOTHING:
        return
    description = (msg.headers or {}).get(Header.DESCRIPTION, "")
    if status == "503" or "deleted" in description.lower():
        raise ConsumerGone(f"{next_subject}: {status} {description}".strip())
    log.warning("pull.poll_status", extra=fields(subject=next_subject, status=f"{status} {description}".strip()))


async def _withdraw(nc: Client, sid: int, queue: "asyncio.Queue[Msg]") -> Msg | None:
    """End the open request: unsubscribe at the server (the subscription stays in the
    client), then a round trip, so that anything delivered before is in the queue."""
    try:
        await nc._send_unsubscribe(sid)
        await nc.flush(timeout=_FLUSH_S)
    except Exception as err:  # NATS down: a delivery made now is redelivered after ack_wait
        log.warning("pull.withdraw_failed", extra=fields(error=repr(err)))
    late = None
    while not queue.empty():
        msg = queue.get_nowait()
        if not (msg.headers or {}).get(Header.STATUS):
            late = msg  # one request for one message: at most one
    return late


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # closed or draining: the subscription is gone with the connection
        log.debug("pull.poll_unsubscribe_failed", exc_info=True)
