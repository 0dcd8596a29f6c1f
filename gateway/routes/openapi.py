"""``GET /openapi.json``: this gateway's OpenAPI description (``gateway.openapi``), public like
``/healthz``: it tells what the API is, nothing about what the platform holds."""

from typing import Any

from aiohttp import web

from gateway.apidoc import documented

OPENAPI = web.AppKey("openapi", bytes)


@documented("The OpenAPI 3.1 description of this API", answers={200: dict[str, Any]})
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json", charset="utf-8")
