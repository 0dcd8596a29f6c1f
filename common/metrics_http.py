"""The small HTTP server of a service that has no other (the node agent, the store):
``GET /metrics`` (Prometheus text) and ``GET /healthz`` (200 while NATS is connected).

Bound to loopback by default (``FAAS_AGENT_METRICS_HOST`` / ``FAAS_STORE_METRICS_HOST``): it
answers without a token, and its figures name functions and nodes. A service starts it
right after its clients and stops it with them (``Lifecycle.on_stop``).
"""

import logging
from collections.abc import Callable

from aiohttp import web

from common.logs import fields
from common.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class MetricsServer:
    """``await server.start()`` then ``server.port`` (the real one when asked for port 0)."""

    def __init__(self, service: str, metrics: Metrics, host: str, port: int, healthy: Callable[[], bool]) -> None:
        self.service = service
        self._metrics = metrics
        self._host = host
        self._port = port
        self._healthy = healthy
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Where Prometheus scrapes it (a wildcard bind address shown as 127.0.0.1)."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "", "::") else self._host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError:
            await runner.cleanup()
            self._runner = None
            raise
        self.port = int(runner.addresses[0][1])
        log.info("metrics.serving", extra=fields(service=self.service, url=self.url))

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _scrape(self, request: web.Request) -> web.Response:
        return web.Response(body=await self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, request: web.Request) -> web.Response:
        if self._healthy():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "NATS is not connected"}, status=503)
