"""The gateway's composition root: builds the clients from the settings, wires them into the
HTTP app and the NATS call service, and owns their lifecycle."""

import logging
from types import TracebackType

from aiohttp import web
from nats.aio.client import Client

from common.jetstream import connect, ensure_layout
from common.kvmirror import KVMirror
from common.lifecycle import TaskSet
from common.logs import fields
from gateway.call_service import CallService
from gateway.call_watch import Replies
from gateway.callback_post import RetryPolicy
from gateway.callbacks import CallbackDispatcher
from gateway.deps import DEPS, Deps
from gateway.functions import Functions
from gateway.invoker import Invoker
from gateway.jobs import Jobs
from gateway.log_stream import LogStreams
from gateway.routes import add_routes
from gateway.routing import NodeRouter
from gateway.runtimes import Runtimes
from gateway.settings import GatewaySettings
from gateway.store_client import StoreClient
from gateway.web import error_middleware
from schemas import Layout

log = logging.getLogger(__name__)

# Multipart boundaries and the small form fields around the module file.
_MULTIPART_OVERHEAD = 1 << 20


def build_app(d: Deps) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=d.settings.max_upload_bytes + _MULTIPART_OVERHEAD,
    )
    app[DEPS] = d
    add_routes(app)
    return app


class Gateway:
    """``async with Gateway(GatewaySettings(nats_url=..., port=0)) as gw: gw.port``"""

    name = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.layout = Layout(settings.prefix)
        self.tasks = TaskSet(self.name)
        self._nc: Client | None = None
        self._invoker: Invoker | None = None
        self._call_service: CallService | None = None
        self._router: NodeRouter | None = None
        self._mirrors: tuple[KVMirror, ...] = ()
        self._replies: Replies | None = None
        self._log_streams: LogStreams | None = None
        self._callbacks: CallbackDispatcher | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started = False
        self._stopped = False

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

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        s = self.settings
        try:
            self._nc = nc = await connect(s.nats_url, "faas-gateway")
            js = nc.jetstream()
            await ensure_layout(js, self.layout)
            runtimes = Runtimes(await js.key_value(self.layout.runtimes_bucket))
            functions = Functions(
                await js.key_value(self.layout.functions_bucket),
                await js.object_store(self.layout.artifacts_bucket),
            )
            self._mirrors = (runtimes.mirror, functions.mirror)
            for mirror in self._mirrors:
                await mirror.start()
            self._router = NodeRouter(await js.key_value(self.layout.nodes_bucket), self.layout)
            await self._router.start()
            self._replies = Replies(nc)
            await self._replies.start()
            self._invoker = Invoker(
                nc,
                js,
                self.layout,
                runtimes,
                functions,
                s.max_params_bytes,
                self._replies,
                poll_s=s.sync_poll_s,
                router=self._router,
                announce_after_s=s.announce_after_s,
            )
            store = StoreClient(nc, self.layout, s.store_timeout_s)
            self._call_service = CallService(
                nc,
                self.layout,
                self._invoker,
                self.tasks,
                min(s.sync_wait_s, s.max_sync_wait_s),
                s.max_params_bytes,
            )
            await self._call_service.start()
            jobs = Jobs(js, self.layout, store, await js.key_value(self.layout.cancels_bucket))
            self._log_streams = LogStreams(js, self.layout, store, s.sse_keepalive_s, s.max_log_streams)
            if s.callbacks:
                policy = RetryPolicy(
                    max_attempts=s.callback_max_attempts,
                    first_delay_s=s.callback_backoff_s,
                    max_delay_s=s.callback_max_backoff_s,
                    deadline_s=s.callback_deadline_s,
                    timeout_s=s.callback_timeout_s,
                )
                self._callbacks = CallbackDispatcher(
                    nc, js, self.layout, policy, s.callback_concurrency, tasks=self.tasks
                )
                await self._callbacks.start()

            app = build_app(Deps(s, nc, runtimes, functions, self._invoker, store, jobs, self._log_streams))
            self._runner = web.AppRunner(
                app, handle_signals=False, shutdown_timeout=s.shutdown_grace_s, access_log=None
            )
            await self._runner.setup()
            await web.TCPSite(self._runner, s.host, s.port).start()
            self._port = int(self._runner.addresses[0][1])
        except BaseException:
            await self.stop()
            raise
        log.info("gateway.started", extra=fields(port=self._port, prefix=s.prefix, nats=s.nats_url))

    async def stop(self) -> None:
        if not self._started or self._stopped:
            return
        self._stopped = True
        grace = self.settings.shutdown_grace_s
        # 1. Sync callers answer now ("still running", 202/503) instead of holding shutdown for
        #    up to max_sync_wait_s; their calls go on and end up in the store.
        if self._invoker is not None:
            self._invoker.stop_waiting()
        # Live log streams end now too (the client reconnects elsewhere).
        if self._log_streams is not None:
            self._log_streams.close_all()
        # 2. No new calls over NATS; callback deliveries in flight get the grace period (the
        #    rest are redelivered to another gateway).
        if self._call_service is not None:
            await self._call_service.stop()
        if self._callbacks is not None:
            await self._callbacks.stop(grace)
        # 3. Stop accepting HTTP; requests in flight get the grace period, then are cancelled.
        if self._runner is not None:
            await self._runner.cleanup()
        # 4. NATS calls in flight: the same grace, then cancel.
        if not await self.tasks.wait_all(grace):
            log.warning("gateway.stop.cancelling", extra=fields(tasks=len(self.tasks)))
            await self.tasks.cancel_all()
        if self._router is not None:
            await self._router.stop()
        for mirror in self._mirrors:
            await mirror.stop()
        if self._replies is not None:
            await self._replies.stop()
        # 5. Flush what was published and close.
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except Exception:
                log.warning("gateway.nats.drain_failed", exc_info=True)
                await self._nc.close()
        log.info("gateway.stopped")

    async def __aenter__(self) -> "Gateway":
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
