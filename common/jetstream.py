"""Connecting to NATS and provisioning the JetStream layout, idempotently.

The gateway calls :func:`ensure_layout` at start (its NATS user may create and update
streams, never delete one); the agent and the store, whose users may not, call
:func:`wait_layout` for the streams they use. So any of them may still come up first.

Replicas: every stream, KV bucket and the object store is made with ``replicas`` copies
(:func:`layout_replicas`: by default ``min(3, servers in the cluster)``), and one that has
fewer (made before the cluster grew, or by a gateway that saw one server) is raised to that
many: KV buckets and the object store are streams (``KV_<bucket>``, ``OBJ_<bucket>``) whose
config is updated like the others'. Replicas are never lowered here: scaling down is an
operator's decision (``nats stream edit --replicas``).
"""

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

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
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from common.jspub import NATS_AWAY
from common.logs import fields
from common.natsauth import agent_streams, kv_stream
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


# "stream name already in use with a different configuration"
_STREAM_NAME_IN_USE = 10058
# A replicated stream needs this many servers of the cluster; JetStream asks no more.
MAX_REPLICAS = 3
Replicas = int | Literal["auto"]


def layout_replicas(nc: Client, setting: Replicas = "auto") -> int:
    """How many replicas the layout gets: ``setting`` if it is a number, else (``"auto"``)
    ``min(3, servers)``, where ``servers`` is the number of NATS servers the client knows:
    those it was given (``FAAS_*_NATS_URL``) and those the server it reached reports in its
    cluster (the ``connect_urls`` of its INFO: every server of the cluster, itself included;
    a server without a cluster reports none). Give the servers by the addresses they
    advertise (``client_advertise``), or one may be counted twice."""
    if setting != "auto":
        return setting
    servers = {(u.hostname, u.port) for u in nc.servers}
    return max(1, min(MAX_REPLICAS, len(servers)))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as err:
        if err.err_code != _STREAM_NAME_IN_USE:
            raise
        # Bring it up to date, keeping the replicas it has if it has more.
        current = (await js.stream_info(config.name or "")).config.num_replicas or 1
        replicas = max(current, config.num_replicas or 1)
        await js.update_stream(dataclasses.replace(config, num_replicas=replicas))


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> None:
    try:
        await js.create_key_value(config)
    except BadRequestError as err:
        # It exists with another config (replicas: raised by raise_replicas; the rest is kept).
        if err.err_code != _STREAM_NAME_IN_USE:
            raise


async def raise_replicas(js: JetStreamContext, streams: list[str], replicas: int, settle_s: float = 30.0) -> list[str]:
    """Give each of ``streams`` (KV buckets and object stores by their stream's name) at
    least ``replicas`` replicas; returns those raised. JetStream copies a raised stream's
    messages to its new replicas; until they are current the stream refuses new consumers
    ("insufficient resources"), so this waits up to ``settle_s`` for them (then logs
    ``layout.replicas_catching_up`` and returns: the copy goes on by itself)."""
    raised = []
    for name in streams:
        config = (await js.stream_info(name)).config
        if (config.num_replicas or 1) >= replicas:
            continue
        await js.update_stream(dataclasses.replace(config, num_replicas=replicas))
        log.warning("layout.replicas_raised", extra=fields(stream=name, was=config.num_replicas or 1, now=replicas))
        raised.append(name)
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + settle_s
    for name in raised:
        while not await _replicas_current(js, name, replicas):
            if loop.time() > give_up_at:
                log.warning("layout.replicas_catching_up", extra=fields(stream=name, replicas=replicas))
                return raised
            await asyncio.sleep(0.1)
    return raised


async def _replicas_current(js: JetStreamContext, name: str, replicas: int) -> bool:
    cluster = (await js.stream_info(name)).cluster
    if cluster is None or cluster.leader is None:
        return False
    peers = cluster.replicas or []
    return len(peers) >= replicas - 1 and all(p.current for p in peers)


def layout_streams(layout: Layout) -> list[str]:
    """Every stream of the layout: the two streams, the KV buckets' and the object store's."""
    return [*agent_streams(layout), kv_stream(layout.tokens_bucket)]


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


async def ensure_layout(
    js: JetStreamContext, layout: Layout, limits: LayoutLimits | None = None, replicas: int = 1
) -> None:
    """Create or update every stream, KV bucket and the object store, each with at least
    ``replicas`` replicas (:func:`layout_replicas`; more than the cluster has servers is refused
    by JetStream). Safe to run from several gateways at once: creating what exists with the
    same config is a no-op, and nothing is ever lowered."""
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
            num_replicas=replicas,
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
            num_replicas=replicas,
        ),
    )
    r = replicas
    await _ensure_bucket(js, KeyValueConfig(bucket=layout.runtimes_bucket, history=5, replicas=r))
    await _ensure_bucket(js, KeyValueConfig(bucket=layout.functions_bucket, history=64, replicas=r))
    await _ensure_bucket(js, KeyValueConfig(bucket=layout.nodes_bucket, history=1, ttl=limits.node_ttl_s, replicas=r))
    cancels = KeyValueConfig(bucket=layout.cancels_bucket, history=1, ttl=limits.cancel_ttl_s, replicas=r)
    await _ensure_bucket(js, cancels)
    # history 1: a revoked token's record is gone, not kept as an older revision.
    await _ensure_bucket(js, KeyValueConfig(bucket=layout.tokens_bucket, history=1, replicas=r))
    artifacts = ObjectStoreConfig(storage=StorageType.FILE, description="function archives", replicas=r)
    try:
        await js.create_object_store(layout.artifacts_bucket, artifacts)
    except BadRequestError as err:
        if err.err_code != _STREAM_NAME_IN_USE:
            raise
    await raise_replicas(js, layout_streams(layout), replicas)


# JetStream cannot place the replicas yet (too few servers up): wait, as for an outage.
_INSUFFICIENT_RESOURCES = 10023
_NO_PEERS = 10005  # "no suitable peers for placement": fewer servers up than replicas, yet
_NOT_READY: tuple[type[Exception], ...] = (*NATS_AWAY, APIError)


async def provision(
    js: JetStreamContext, layout: Layout, replicas: int, wait_s: float, limits: LayoutLimits | None = None
) -> None:
    """:func:`ensure_layout`, tried again every second for up to ``wait_s`` while JetStream
    is not ready for it (NATS away, a cluster without a leader yet, fewer servers up than
    ``replicas``); logs ``layout.waiting`` once. Other errors (a setting JetStream refuses)
    are raised at once."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + wait_s
    waited = False
    while True:
        try:
            await ensure_layout(js, layout, limits, replicas)
        except _NOT_READY as err:
            if isinstance(err, APIError) and not isinstance(err, ServiceUnavailableError):
                away = err.err_code in (_INSUFFICIENT_RESOURCES, _NO_PEERS)
            else:
                away = True
            if not away or loop.time() + 1.0 > give_up_at:
                raise
            if not waited:
                log.warning("layout.waiting", extra=fields(replicas=replicas, error=repr(err)))
                waited = True
            await asyncio.sleep(1.0)
            continue
        log.info("layout.ready", extra=fields(prefix=layout.prefix, replicas=replicas))
        return
