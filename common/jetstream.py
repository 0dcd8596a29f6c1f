"""Connecting to NATS and provisioning the JetStream layout, idempotently.

Every service calls :func:`ensure_layout` at start, so any of them may come up first.
"""

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
from nats.js.errors import BadRequestError

from common.logs import fields
from schemas import Layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayoutLimits:
    events_max_age_s: float = 7 * 24 * 3600
    # -1: bounded by age only. A byte cap is reserved up front by JetStream on every stream.
    events_max_bytes: int = -1
    invoke_max_msgs: int = 1_000_000
    max_msg_size: int = 1 << 20
    node_ttl_s: float = 15.0
    cancel_ttl_s: float = 7 * 24 * 3600


async def connect(url: str, name: str) -> Client:
    """A client that keeps reconnecting for ever: a NATS restart must not kill a service."""

    async def on_error(err: Exception) -> None:
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
