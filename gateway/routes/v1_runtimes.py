"""``/v1/runtimes``: register, list, show, delete."""

from aiohttp import web

from gateway import registration
from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import check_name
from gateway.web import json_response, model_json, read_json
from schemas import RuntimeSpec
from schemas.http import Deleted, NamePath

RUNTIME_BODY_LIMIT = 64 * 1024


@documented("Register or replace a runtime", body=RuntimeSpec, answers={201: RuntimeSpec}, errors=(503,))
async def create(request: web.Request) -> web.Response:
    """``POST /v1/runtimes`` (a RuntimeSpec) → 201 with the spec."""
    body = await read_json(request, RUNTIME_BODY_LIMIT)
    spec = await registration.register_runtime(deps(request).runtimes, body)
    return json_response(model_json(spec), status=201)


@documented("Every runtime", answers={200: list[RuntimeSpec]}, errors=(503,))
async def list_all(request: web.Request) -> web.Response:
    return json_response([model_json(s) for s in await deps(request).runtimes.all()])


@documented("One runtime", path=NamePath, answers={200: RuntimeSpec}, errors=(400, 404, 503))
async def get_one(request: web.Request) -> web.Response:
    name = check_name("runtime", request.match_info["name"])
    return json_response(model_json(await deps(request).runtimes.get(name)))


@documented("Delete a runtime", path=NamePath, answers={200: Deleted}, errors=(400, 404, 409, 503))
async def delete(request: web.Request) -> web.Response:
    """409 while functions still use the runtime."""
    d = deps(request)
    name = request.match_info["name"]
    await registration.delete_runtime(d.runtimes, d.functions, name)
    return json_response(model_json(Deleted(deleted=name)))
