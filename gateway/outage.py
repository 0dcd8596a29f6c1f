"""While the gateway's NATS connection is down, requests are answered 503 at once.

Every route but ``/healthz``, ``/openapi.json`` and the dashboard's files needs NATS (a KV
read, a publish, a store query); while the client reconnects, a publish would be buffered
and wait for its PubAck until it times out, holding the caller for seconds and then failing
anyway. So a request that arrives while the connection is down gets ``503 unavailable``
with ``Retry-After`` straight away (the same JSON error shape as every other error), and
``/healthz`` says 503 too, so that a load balancer sends the next requests to a gateway
whose NATS is up. A request already past this check when the connection drops ends in a
503 as well (``gateway.web``'s error middleware).
"""

from typing import Any

from aiohttp import web
from nats.aio.client import Client

from gateway.errors import unavailable

# /healthz answers for itself (503 while away); the API's description and the dashboard's
# static files need no NATS (the dashboard then shows the API's 503s).
_OWN_ANSWER = frozenset({"/healthz", "/openapi.json", "/ui", "/docs"})
_OWN_PREFIX = "/ui/"


def nats_outage_middleware(nc: Client) -> Any:
    @web.middleware
    async def refuse_while_away(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if not nc.is_connected and path not in _OWN_ANSWER and not path.startswith(_OWN_PREFIX):
            raise unavailable("NATS is unreachable: the gateway is reconnecting; try again shortly")
        response: web.StreamResponse = await handler(request)
        return response

    return refuse_while_away
