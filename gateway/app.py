"""The gateway's composition root: builds the clients from the settings, wires them into the
HTTP app and the NATS call service, and owns their lifecycle."""

import asyncio
import logging
from collections import Counter
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractResolver

from common.jetstream import connect, drain_or_close, layout_replicas, provision
from common.lifecycle import Lifecycle, TaskSet
from common.logs import fields
from common.metrics import Metrics
from common.sealing import SecretsKey
from gateway.access import RULES
from gateway.artifact_sweep import ArtifactSweeper
from gateway.bootstrap import ensure_admin_token
from gateway.call_cancel import CallCancels
from gateway.call_service import CallService
from gateway.call_watch import Replies
from gateway.callback_guard import CallbackGuard, own_addresses
from gateway.callback_post import RetryPolicy
from gateway.callbacks import CallbackDispatcher
from gateway.cancels import Cancels
from gateway.crosssite import SameSite
from gateway.deps import DEPS, Deps
from gateway.functions import Functions
from gateway.guard import Guard, guard_middleware
from gateway.http_protocol import JsonErrorRunner
from gateway.invoker import Invoker
from gateway.jobs import Jobs
from gateway.log_stream import LogStreams
from gateway.metrics import GatewayCollector, queue_depths
from gateway.outage import nats_outage_middleware
from gateway.routes import add_routes
from gateway.routing import NodeRouter
from gateway.runtimes import Runtimes
from gateway.settings import GatewaySettings
from gateway.store_client import StoreClient
from gateway.tokens import Tokens
from gateway.web import error_middleware
from schemas import Layout

log = logging.getLogger(__name__)

# Multipart boundaries and the small form fields around the module file.
_MULTIPART_OVERHEAD = 1 << 20
_TOKENS_LOAD_S = 10.0


def build_app(d: Deps) -> web.Application:
    s = d.settings
    app = web.Application(client_max_size=s.max_upload_bytes + _MULTIPART_OVERHEAD)
    app[DEPS] = d
    add_routes(app)
    guard = Guard(app[RULES], SameSite(s.host, s.allowed_hosts), d.tokens if s.auth else None)
    # Errors first: the guard's refusals and the outage's 503 get the JSON error shape too.
    # The outage check before the guard: a token check may need the tokens bucket.
    app.middlewares.extend([error_middleware, nats_outage_middleware(d.nc), guard_middleware(guard)])
    return app


class Gateway(Lifecycle):
    """``async with Gateway(GatewaySettings(nats_url=..., port=0)) as gw: gw.port``

    A stop, step by step (the reverse of ``_start``): sync callers and live log streams
    answer at once; NATS calls, callback deliveries and HTTP stop coming in, what is in
    flight getting ``shutdown_grace_s``; then the watches and the NATS connection go.
    """

    def __init__(self, settings: GatewaySettings, resolver: AbstractResolver | None = None) -> None:
        """``resolver``: how callback hosts are resolved (the system's by default; tests fake DNS)."""
        super().__init__("gateway")
        self.settings = settings
        self._resolver = resolver
        self.layout = Layout(settings.prefix)
        self.tasks = TaskSet(self.name)
        self._port: int | None = None
        self.metrics = Metrics()  # this gateway's registry (gateway/metrics.py)
        self._callbacks: CallbackDispatcher | None = None

    @property
    def port(self) -> int:
        """The bound HTTP port (the real one when ``settings.port`` is 0)."""
        if self._port is None:
            raise RuntimeError("gateway not started")
        return self._port

    @property
    def url(self) -> str:
        host = self.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        return f"http://{host}:{self.port}"

    def _callback_outcomes(self) -> Counter[str] | None:
        return self._callbacks.outcomes if self._callbacks is not None else None

    async def _start(self) -> None:
        s = self.settings
        grace = s.shutdown_grace_s
        # 0. What needs no client: the secrets key (a bad key file stops the start here) and
        #    the callback guard (this host's addresses).
        secrets_key = SecretsKey.load(s.secrets_key_file) if s.secrets_key_file else None
        nats_hosts = [urlsplit(u.strip()).hostname or "" for u in s.nats_url.split(",")]
        own = await asyncio.to_thread(own_addresses, [*nats_hosts, s.host])  # getaddrinfo blocks
        guard = CallbackGuard(s.callback_allow_networks, s.callback_deny_networks, own, self._resolver)
        # 1. Clients and watches. The NATS connection goes last, flushing what was published.
        nc = await connect(s.nats_url, "faas-gateway", s.nats_auth)
        self.on_stop("nats", lambda: drain_or_close(nc))
        js = nc.jetstream()
        await provision(js, self.layout, layout_replicas(nc, s.nats_replicas), s.layout_wait_s, s.layout_limits())
        replies = Replies(nc)
        self.on_stop("replies", replies.stop)
        await replies.start()
        runtimes = Runtimes(await js.key_value(self.layout.runtimes_bucket))
        functions_kv = await js.key_value(self.layout.functions_bucket)
        artifacts = await js.object_store(self.layout.artifacts_bucket)
        sweeper = ArtifactSweeper(functions_kv, artifacts, s.keep_versions, s.artifact_sweep_s, s.artifact_grace_s)
        self.on_stop("artifact-sweep", sweeper.stop)
        await sweeper.start()
        functions = Functions(functions_kv, artifacts, changed=sweeper.poke)
        tokens = Tokens(await js.key_value(self.layout.tokens_bucket))
        for name, mirror in (
            ("runtimes", runtimes.mirror),
            ("functions", functions.mirror),
            ("tokens", tokens.mirror),
        ):
            self.on_stop(f"{name}-mirror", mirror.stop)
            await mirror.start()
        # Until the tokens are in memory every request would read KV: wait for them (a
        # bucket of thousands loads in well under a second).
        if not await tokens.mirror.wait_ready(_TOKENS_LOAD_S):
            log.warning("gateway.tokens_not_loaded", extra=fields(after_s=_TOKENS_LOAD_S))
        if s.auth and s.admin_token_file is not None:
            await ensure_admin_token(tokens, s.admin_token_file)
        if not s.auth:
            log.warning("gateway.auth_off", extra=fields(host=s.host))
        router = NodeRouter(await js.key_value(self.layout.nodes_bucket), self.layout)
        self.on_stop("router", router.stop)
        await router.start()
        invoker = Invoker(
            nc,
            js,
            self.layout,
            runtimes,
            functions,
            s.max_params_bytes,
            replies,
            poll_s=s.sync_poll_s,
            router=router,
            announce_after_s=s.announce_after_s,
            queue_full_retry_after_s=s.queue_full_retry_after_s,
        )
        store = StoreClient(nc, self.layout, s.store_timeout_s)
        cancels = Cancels(js, self.layout.events_stream, await js.key_value(self.layout.cancels_bucket))
        call_cancels = CallCancels(js, self.layout, store, cancels)
        jobs = Jobs(
            js,
            self.layout,
            store,
            cancels,
            secrets_key,
            router=router,
            queue_full_retry_after_s=s.queue_full_retry_after_s,
        )
        log_streams = LogStreams(js, self.layout, store, s.sse_keepalive_s, s.max_log_streams)

        # The metrics, read at each scrape (the queues from JetStream at most every 1.5 s).
        queues = queue_depths(js, self.layout, runtimes.names, lambda: [n.node_id for n, _ in router.nodes()])
        self.metrics.before_scrape(queues.get)
        self.metrics.registry.register(GatewayCollector(queues, router.nodes, self._callback_outcomes))

        # 2. NATS calls in flight (and the callback loop's tasks) once intake has stopped: the
        #    grace period, then cancelled.
        self.on_stop("in-flight", lambda: self.tasks.drain(grace))

        # 3. Intake. HTTP: at stop, no new connections; requests in flight get the grace period,
        #    then are cancelled.
        app = build_app(
            Deps(
                s,
                nc,
                runtimes,
                functions,
                invoker,
                store,
                jobs,
                log_streams,
                guard,
                tokens,
                router,
                self.metrics,
                call_cancels,
            )
        )
        runner = JsonErrorRunner(app, handle_signals=False, shutdown_timeout=grace, access_log=None)
        self.on_stop("http", runner.cleanup)
        await runner.setup()
        await web.TCPSite(runner, s.host, s.port).start()
        self._port = int(runner.addresses[0][1])
        # Callback deliveries in flight get the grace period (the rest are redelivered to
        # another gateway).
        if s.callbacks:
            policy = RetryPolicy(
                max_attempts=s.callback_max_attempts,
                first_delay_s=s.callback_backoff_s,
                max_delay_s=s.callback_max_backoff_s,
                deadline_s=s.callback_deadline_s,
                timeout_s=s.callback_timeout_s,
            )
            callbacks = CallbackDispatcher(
                nc,
                js,
                self.layout,
                policy,
                s.callback_concurrency,
                tasks=self.tasks,
                guard=guard,
                max_dispatches=s.callback_max_dispatches,
            )
            self.on_stop("callbacks", lambda: callbacks.stop(grace))
            await callbacks.start()
            self._callbacks = callbacks
        call_service = CallService(
            nc,
            self.layout,
            invoker,
            self.tasks,
            min(s.sync_wait_s, s.max_sync_wait_s),
            s.max_params_bytes,
            call_cancels,
        )
        self.on_stop("call-service", call_service.stop)
        await call_service.start()

        # 4. The first step of a stop: sync callers answer now ("still running", 202/503)
        #    instead of holding it for up to max_sync_wait_s (their calls go on and end up in
        #    the store), and live log streams end (the client reconnects elsewhere).
        def answer_waiters() -> None:
            invoker.stop_waiting()
            log_streams.close_all()

        self.on_stop("answer-waiters", answer_waiters)
        log.info("gateway.started", extra=fields(port=self._port, prefix=s.prefix, nats=s.nats_url, auth=s.auth))
