"""``GET /healthz``: 200 while the NATS connection is up, 503 otherwise."""

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import unavailable
from gateway.web import json_response
from schemas.http import Health


@documented("Liveness: 200 while the gateway's NATS connection is up", answers={200: Health}, errors=(503,))
async def healthz(request: web.Request) -> web.Response:
    nc = deps(request).nc
    if not nc.is_connected:
        raise unavailable("NATS is not connected")
    return json_response({"status": "ok"})
