"""The original route set, with its exact request and response shapes.

Errors use the same JSON shape as ``/v1``: ``{"error": {"code": ..., "message": ...}}``.
"""

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from gateway import registration
from gateway.deps import deps
from gateway.errors import bad_request
from gateway.legacy_format import legacy_call, legacy_calls
from gateway.uploads import read_upload
from gateway.web import json_response, parse_model, read_json
from schemas import GetCall, Limits

RUNTIME_BODY_LIMIT = 64 * 1024
# The invoke body wraps the params: allow for funcName and the braces.
_ENVELOPE = 1024


class LegacyInvoke(BaseModel):
    funcName: str
    params: Any = Field(default_factory=dict)


async def register_runtime(request: web.Request) -> web.Response:
    """``POST /registerRuntime`` ``{"image","path","dependencies","run"[,"name"]}`` → ``{"runtime"}``."""
    body = await read_json(request, RUNTIME_BODY_LIMIT)
    spec = await registration.register_runtime(deps(request).runtimes, body)
    return json_response({"runtime": spec.name})


async def register_function(request: web.Request) -> web.Response:
    """``POST /registerFunction/{runtime}/{funcName}``, multipart file ``module``.

    → ``{"function", "version"}``.
    """
    d = deps(request)
    s = d.settings
    upload = await read_upload(request, s.max_upload_bytes)
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


async def invoke_function(request: web.Request) -> web.Response:
    """``POST /invokeFunction`` ``{"funcName","params"}`` → ``{"callNum","callId"}`` (async)."""
    d = deps(request)
    body = await read_json(request, d.settings.max_params_bytes + _ENVELOPE)
    if not isinstance(body, dict):
        raise bad_request('invalid invocation: expected a JSON object {"funcName": ..., "params": {...}}')
    req = parse_model(LegacyInvoke, body, "invocation")
    ticket = await d.invoker.submit(req.funcName, req.params)
    return json_response({"callNum": ticket.number, "callId": ticket.id})


async def list_runtimes(request: web.Request) -> web.Response:
    """``GET /runtimes`` → ``["pythonruntime", ...]``."""
    return json_response(await deps(request).runtimes.names())


async def list_functions(request: web.Request) -> web.Response:
    """``GET /functions`` → ``["dice", ...]``."""
    return json_response(await deps(request).functions.names())


async def list_calls(request: web.Request) -> web.Response:
    """``GET /calls`` → ``{"c1": {"funcName","params","callNum","status","result"}, ...}``."""
    return json_response(legacy_calls(await deps(request).store.all_calls()))


async def get_call(request: web.Request) -> web.Response:
    """``GET /call/{callNum}`` → one call in the ``/calls`` shape, 404 if unknown."""
    raw = request.match_info["callNum"]
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise bad_request(f"call number must be a positive integer, not {raw!r}")
    record = await deps(request).store.get_call(GetCall(number=int(raw)))
    return json_response(legacy_call(record))
