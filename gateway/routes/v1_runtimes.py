"""``/v1/runtimes``: register, list, show, delete."""

from aiohttp import web

from gateway import registration
from gateway.deps import deps
from gateway.errors import check_name
from gateway.web import json_response, model_json, read_json

RUNTIME_BODY_LIMIT = 64 * 1024


async def create(request: web.Request) -> web.Response:
    """``POST /v1/runtimes`` (a RuntimeSpec) → 201 with the spec."""
    body = await read_json(request, RUNTIME_BODY_LIMIT)
    spec = await registration.register_runtime(deps(request).runtimes, body)
    return json_response(model_json(spec), status=201)


async def list_all(request: web.Request) -> web.Response:
    return json_response([model_json(s) for s in await deps(request).runtimes.all()])


async def get_one(request: web.Request) -> web.Response:
    name = check_name("runtime", request.match_info["name"])
    return json_response(model_json(await deps(request).runtimes.get(name)))


async def delete(request: web.Request) -> web.Response:
    """409 while functions still use the runtime."""
    d = deps(request)
    name = request.match_info["name"]
    await registration.delete_runtime(d.runtimes, d.functions, name)
    return json_response({"deleted": name})
