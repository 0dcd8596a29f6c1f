"""The original route set, with its exact request and response shapes.

Errors use the same JSON shape as ``/v1``: ``{"error": {"code": ..., "message": ...}}``.
"""

from aiohttp import web

from gateway import registration
from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import bad_request
from gateway.legacy_format import legacy_call, legacy_calls
from gateway.uploads import read_upload
from gateway.web import json_response, parse_model, read_json
from schemas import GetCall, Limits, RuntimeSpec
from schemas.http import (
    CallNumPath,
    LegacyCall,
    LegacyFunction,
    LegacyFunctionForm,
    LegacyFunctionPath,
    LegacyInvoke,
    LegacyInvoked,
    LegacyRuntime,
)

RUNTIME_BODY_LIMIT = 64 * 1024
# The invoke body wraps the params: allow for funcName and the braces.
_ENVELOPE = 1024


@documented("Register or replace a runtime", body=RuntimeSpec, answers={200: LegacyRuntime}, errors=(503,))
async def register_runtime(request: web.Request) -> web.Response:
    """``POST /registerRuntime`` ``{"image","path","dependencies","run"[,"name"]}`` → ``{"runtime"}``."""
    body = await read_json(request, RUNTIME_BODY_LIMIT)
    spec = await registration.register_runtime(deps(request).runtimes, body)
    return json_response({"runtime": spec.name})


@documented(
    "Upload a new version of a function",
    path=LegacyFunctionPath,
    form=LegacyFunctionForm,
    answers={200: LegacyFunction},
    errors=(404, 409, 503),
)
async def register_function(request: web.Request) -> web.Response:
    """``POST /registerFunction/{runtime}/{funcName}``, multipart file ``module``.

    → ``{"function", "version"}``.
    """
    d = deps(request)
    s = d.settings
    upload = await read_upload(request, s.upload_limits)
    if upload.module is None:
        raise bad_request("missing field: module (the .zip or .tar.gz file)")
    record = await registration.register_function(
        d.runtimes,
        d.functions,
        name=request.match_info["funcName"],
        runtime=request.match_info["runtime"],
        archive=upload.module,
        limits=Limits(),
        max_upload_bytes=s.max_upload_bytes,
        max_uncompressed_bytes=s.max_uncompressed_bytes,
    )
    return json_response({"function": record.name, "version": record.version})


@documented("Invoke a function asynchronously", body=LegacyInvoke, answers={200: LegacyInvoked}, errors=(404, 503))
async def invoke_function(request: web.Request) -> web.Response:
    """``POST /invokeFunction`` ``{"funcName","params"}`` → ``{"callNum","callId"}`` (async)."""
    d = deps(request)
    body = await read_json(request, d.settings.max_params_bytes + _ENVELOPE)
    if not isinstance(body, dict):
        raise bad_request('invalid invocation: expected a JSON object {"funcName": ..., "params": {...}}')
    req = parse_model(LegacyInvoke, body, "invocation")
    ticket = await d.invoker.submit(req.funcName, req.params)
    return json_response({"callNum": ticket.number, "callId": ticket.id})


@documented("Runtime names", answers={200: list[str]}, errors=(503,))
async def list_runtimes(request: web.Request) -> web.Response:
    """``GET /runtimes`` → ``["pythonruntime", ...]``."""
    return json_response(await deps(request).runtimes.names())


@documented("Function names", answers={200: list[str]}, errors=(503,))
async def list_functions(request: web.Request) -> web.Response:
    """``GET /functions`` → ``["dice", ...]``."""
    return json_response(await deps(request).functions.names())


@documented("Every call (up to 10 000), keyed c<number>", answers={200: dict[str, LegacyCall]}, errors=(502, 503))
async def list_calls(request: web.Request) -> web.Response:
    """``GET /calls`` → ``{"c1": {"funcName","params","callNum","status","result"}, ...}``."""
    return json_response(legacy_calls(await deps(request).store.all_calls()))


@documented("One call", path=CallNumPath, answers={200: LegacyCall}, errors=(400, 404, 502, 503))
async def get_call(request: web.Request) -> web.Response:
    """``GET /call/{callNum}`` → one call in the ``/calls`` shape, 404 if unknown."""
    raw = request.match_info["callNum"]
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request(f"call number must be a positive integer, not {raw!r}")
    number = parse_model(CallNumPath, {"callNum": raw}, "call number").callNum
    record = await deps(request).store.get_call(GetCall(number=number))
    return json_response(legacy_call(record))
