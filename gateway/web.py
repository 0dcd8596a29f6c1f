"""HTTP plumbing shared by the routes: the one error middleware, JSON in and out."""

import asyncio
import json
import logging
import time
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from common.jspub import NATS_AWAY
from common.logs import fields
from gateway.errors import GatewayError, bad_request, invalid, too_large, unavailable
from schemas import InvalidMessage, decode_json
from schemas.http import ErrorBody, ErrorDetail

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    504: "timeout",
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(value, status=status, headers=headers, dumps=_dumps)


def model_json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


def model_response(model: BaseModel, status: int = 200) -> web.Response:
    """A model as JSON straight from pydantic's serializer (the same text as
    ``json_response(model_json(model))``, without the dict in between): the sync invoke's answer."""
    body = model.model_dump_json().encode()
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Every error answer: an ``ErrorBody``."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return json_response(model_json(body), status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """The only place where exceptions become HTTP responses; and one structured DEBUG line
    per request (aiohttp's own access log is off: a line per request at INFO is a noticeable
    share of the gateway's CPU, docs/benchmarks.md)."""
    if log.isEnabledFor(logging.DEBUG):
        started = time.perf_counter()
        response = await _answer(request, handler)
        ms = round((time.perf_counter() - started) * 1000, 1)
        log.debug("http.request", extra=fields(method=request.method, path=request.path, status=response.status, ms=ms))
        return response
    return await _answer(request, handler)


async def _answer(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except GatewayError as err:
        if err.status >= 500:
            log.warning("http.unavailable", extra=fields(path=request.path, status=err.status, error=err.message))
        return error_response(err.status, err.code, err.message, err.headers)
    except web.HTTPException as err:
        # aiohttp's own: unknown route, wrong method, body over client_max_size.
        if err.status < 400:
            raise
        keep = {k: v for k, v in err.headers.items() if k.lower() == "allow"}
        return error_response(err.status, ERROR_CODES.get(err.status, "http_error"), err.text or err.reason, keep)
    except asyncio.CancelledError:
        raise
    except NATS_AWAY as err:
        # NATS went away under a request (a route that does not say so itself): a pause.
        log.warning("http.unavailable", extra=fields(path=request.path, status=503, error=repr(err)))
        e = unavailable(f"NATS is unreachable ({type(err).__name__}); try again shortly")
        return error_response(e.status, e.code, e.message, e.headers)
    except Exception:
        log.exception("http.unhandled", extra=fields(method=request.method, path=request.path))
        return error_response(500, "internal", "internal error (logged by the gateway)")


async def read_body(request: web.Request, limit: int, what: str = "body") -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large(f"{what} is {request.content_length} bytes, more than the limit of {limit}")
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (a call's params, usually): take it as is,
        # without the chunk iterator's awaits (about a tenth of the gateway's CPU per call).
        data = content.read_nowait()
        if len(data) > limit:
            raise too_large(f"{what} is {len(data)} bytes, more than the limit of {limit}")
        return data
    buf = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise too_large(f"{what} is more than the limit of {limit} bytes")
    return bytes(buf)


def parse_json(data: bytes, empty: Any = None) -> Any:
    """Parse an HTTP body (not a NATS payload); ``empty`` is what an empty body means."""
    if not data.strip():
        if empty is None:
            raise bad_request("empty body: expected JSON")
        return empty
    try:
        return decode_json(data)
    except InvalidMessage as err:
        raise bad_request(str(err)) from None


async def read_json(request: web.Request, limit: int, empty: Any = None) -> Any:
    return parse_json(await read_body(request, limit), empty)


def parse_model(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise invalid(err, what) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model`` (by each field's alias): an empty value is the default,
    unknown parameters are ignored; a bad value, or one given twice, is a 400 naming it."""
    query = request.query
    raw: dict[str, str] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        value = query.get(key)
        if value:
            if len(query.getall(key)) > 1:
                raise bad_request(f"query parameter {key!r} is given more than once")
            raw[key] = value
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        problems = [
            f"query parameter {'.'.join(str(p) for p in e['loc'])!r}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors(include_url=False)
        ]
        raise bad_request("; ".join(problems)) from None
