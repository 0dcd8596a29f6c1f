"""Connecting to NATS and provisioning the JetStream layout, idempotently.

The gateway calls :func:`ensure_layout` at start (its NATS user may create and update
streams, never delete one); the agent and the store, whose users may not, call
:func:`wait_layout` for the streams they use. So any of them may still come up first.
"""

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from common.logs import fields
from common.natsclient import NatsAuth
from schemas import Layout

log = logging.getLogger(__name__)


GiB = 1 << 30


@dataclass(frozen=True)
class LayoutLimits:
    """How much the two streams may hold (the gateway's settings set them: README "Limits and
    retention"). A byte cap is reserved up front by JetStream against the server's
    ``max_file_store`` (per replica), so the caps must fit in it together.

    - events (discard OLD): at either limit the oldest events are deleted. Those the store has
      stored are no loss; a store lagging behind the limit loses what it had not taken yet
      (``store.events_lost``), and a sync caller or log follower may miss an old event.
    - invoke (discard NEW): a publish past either limit is refused, never an accepted call
      dropped: the gateway answers 503 ``queue_full``. No age limit by default: an age limit
      here would drop calls waiting longer than it, silently (0: none).
    """

    events_max_age_s: float = 7 * 24 * 3600
    events_max_bytes: int = GiB
    invoke_max_msgs: int = 1_000_000
    invoke_max_bytes: int = GiB
    invoke_max_age_s: float = 0.0
    max_msg_size: int = 1 << 20
    node_ttl_s: float = 15.0
    cancel_ttl_s: float = 7 * 24 * 3600


async def connect(url: str, name: str, auth: NatsAuth | None = None) -> Client:
    """A client that keeps reconnecting for ever: a NATS restart must not kill a service.

    ``auth``: the service's NATS user, password and TLS files; its replies come to the
    user's own inbox prefix (``_INBOX.<user>``), the only inboxes that user may read."""
    auth = auth or NatsAuth()

    async def on_error(err: Exception) -> None:
        text = str(err).lower()
        if "permissions violation" in text or "authorization violation" in text:
            # A subject this user may not use, or wrong credentials: a deployment error.
            log.error("nats.denied", extra=fields(user=auth.user, error=str(err)))
        else:
            log.warning("nats.error", extra=fields(error=repr(err)))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    # "nats://a:4222,nats://b:4222": a cluster's servers, any of which may be down at start.
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(
        servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **auth.connect_options(),
    )


async def drain_or_close(nc: Client) -> None:
    """A service's last NATS step: drain (what was published and acked is flushed, the
    subscriptions' pending messages handled). When NATS is down (reconnecting) or the drain
    fails there is nothing left to flush, but the client must not go on reconnecting for ever
    behind a stopped service: it is closed instead."""
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except Exception as err:
        log.warning("nats.drain_failed", extra=fields(error=repr(err)))
        try:
            await nc.close()
        except OSError as lost:
            # nats-py 2.16 flushes what is pending into the lost socket and raises; the client
            # is CLOSED all the same (no more reconnecting), and there was nothing to save.
            log.warning("nats.close_failed", extra=fields(error=repr(lost)))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as err:
        # "stream name already in use with a different configuration": bring it up to date.
        if err.err_code != 10058:
            raise
        await js.update_stream(config)


async def wait_layout(js: JetStreamContext, streams: list[str], poll_s: float = 0.5, report_s: float = 10.0) -> None:
    """Wait until every stream in ``streams`` exists (a service whose NATS user may not
    create the layout, until the gateway has). Logs ``layout.waiting`` with what is missing
    at once and every ``report_s``, and ``layout.ready`` once it was waited for."""
    loop = asyncio.get_running_loop()
    missing = list(streams)
    reported_at: float | None = None
    while True:
        for name in list(missing):
            try:
                await js.stream_info(name)
            except NotFoundError:
                continue
            missing.remove(name)
        if not missing:
            break
        if reported_at is None or loop.time() - reported_at >= report_s:
            reported_at = loop.time()
            log.info("layout.waiting", extra=fields(missing=",".join(missing), creator="the gateway"))
        await asyncio.sleep(poll_s)
    if reported_at is not None:
        log.info("layout.ready", extra=fields(streams=",".join(streams)))


async def ensure_layout(js: JetStreamContext, layout: Layout, limits: LayoutLimits | None = None) -> None:
    limits = limits or LayoutLimits()
    await _ensure_stream(
        js,
        StreamConfig(
            name=layout.invoke_stream,
            subjects=[layout.invoke_all],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msgs=limits.invoke_max_msgs,
            max_bytes=limits.invoke_max_bytes,
            max_age=limits.invoke_max_age_s,
            max_msg_size=limits.max_msg_size,
            discard=DiscardPolicy.NEW,
            duplicate_window=120.0,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=layout.events_stream,
            subjects=[layout.events_all],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=limits.events_max_age_s,
            max_bytes=limits.events_max_bytes,
            max_msg_size=limits.max_msg_size,
            discard=DiscardPolicy.OLD,
            duplicate_window=120.0,
        ),
    )
    await js.create_key_value(KeyValueConfig(bucket=layout.runtimes_bucket, history=5))
    await js.create_key_value(KeyValueConfig(bucket=layout.functions_bucket, history=64))
    await js.create_key_value(KeyValueConfig(bucket=layout.nodes_bucket, history=1, ttl=limits.node_ttl_s))
    await js.create_key_value(KeyValueConfig(bucket=layout.cancels_bucket, history=1, ttl=limits.cancel_ttl_s))
    # history 1: a revoked token's record is gone, not kept as an older revision.
    await js.create_key_value(KeyValueConfig(bucket=layout.tokens_bucket, history=1))
    await js.create_object_store(
        layout.artifacts_bucket, ObjectStoreConfig(storage=StorageType.FILE, description="function archives")
    )
