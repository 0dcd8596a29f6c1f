"""``GET /metrics``: this gateway's figures in the Prometheus text format (gateway/metrics.py).

Authenticated like every route but ``/healthz``: a token with the ``read`` right (roles
``read``, ``deploy``, ``admin``), which Prometheus sends from its scrape config
(``authorization: {credentials_file: ...}``). The figures name functions, runtimes and
nodes, which an anonymous client may not learn from any other route either.
"""

from aiohttp import web

from common.metrics import CONTENT_TYPE
from gateway.apidoc import documented
from gateway.deps import deps


@documented("Prometheus metrics of this gateway (text exposition format)", answers={200: str}, media_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    """Queue depth per runtime and per node, nodes by freshness, callback outcomes; the calls,
    containers and pools are on each agent's own ``/metrics``, the ingest lag and jobs on the
    store's (README, "Metrics")."""
    body = await deps(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
