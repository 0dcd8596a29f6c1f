"""``/v1/functions``: register (multipart), list, show with versions, delete."""

from aiohttp import web

from gateway import registration
from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import bad_request, check_name
from gateway.uploads import read_upload
from gateway.web import json_response, model_json, read_json
from schemas import FunctionRecord
from schemas.http import Deleted, FunctionDetail, FunctionForm, NamePath, SequenceRequest

SEQUENCE_BODY_LIMIT = 16 * 1024


@documented(
    "Upload a new version of a function",
    form=FunctionForm,
    answers={201: FunctionRecord},
    errors=(404, 409, 503),
)
async def create(request: web.Request) -> web.Response:
    """``POST /v1/functions``: fields ``name``, ``runtime``, file ``module``,
    optional ``limits`` JSON, ``handler`` (``module:function``: the handler protocol) and
    ``calls`` (the functions it may call, comma-separated)."""
    d = deps(request)
    s = d.settings
    upload = await read_upload(request, s.upload_limits)
    missing = [f for f in ("name", "runtime") if not upload.fields.get(f)]
    if upload.module is None:
        missing.append("module")
    if missing:
        raise bad_request(("missing fields: " if len(missing) > 1 else "missing field: ") + ", ".join(missing))
    assert upload.module is not None
    record = await registration.register_function(
        d.runtimes,
        d.functions,
        name=upload.fields["name"],
        runtime=upload.fields["runtime"],
        archive=upload.module,
        limits=registration.parse_limits(upload.fields.get("limits")),
        handler=upload.fields.get("handler"),
        calls=registration.parse_calls(upload.fields.get("calls")),
        max_upload_bytes=s.max_upload_bytes,
        max_uncompressed_bytes=s.max_uncompressed_bytes,
    )
    return json_response(model_json(record), status=201)


@documented("The latest version of every function", answers={200: list[FunctionRecord]}, errors=(503,))
async def list_all(request: web.Request) -> web.Response:
    """The latest version of every function."""
    return json_response([model_json(r) for r in await deps(request).functions.all()])


@documented("One function, with its versions", path=NamePath, answers={200: FunctionDetail}, errors=(400, 404, 503))
async def get_one(request: web.Request) -> web.Response:
    """The latest version plus ``versions``: every version number still in KV history."""
    functions = deps(request).functions
    name = check_name("function", request.match_info["name"])
    record = await functions.get(name)
    return json_response({**model_json(record), "versions": await functions.versions(name)})


@documented("Delete a function (its history stays)", path=NamePath, answers={200: Deleted}, errors=(400, 404, 503))
async def delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await registration.delete_function(deps(request).functions, name)
    return json_response(model_json(Deleted(deleted=name)))


@documented(
    "Register a new version of a sequence: functions called in turn",
    body=SequenceRequest,
    answers={201: FunctionRecord},
    errors=(400, 404, 409, 503),
)
async def create_sequence(request: web.Request) -> web.Response:
    """``POST /v1/sequences`` ``{"name", "steps": [...], "timeout_s"}``: each step's result is
    the next one's params; the steps must be registered. Invoked like any function."""
    body = await read_json(request, SEQUENCE_BODY_LIMIT)
    record = await registration.register_sequence(deps(request).functions, body)
    return json_response(model_json(record), status=201)
