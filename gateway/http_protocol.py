"""Requests that aiohttp refuses before any middleware sees them (a request line or header
over its 8190-byte limit, bytes no header may hold, a malformed chunked body) get the API's
JSON error body too, not aiohttp's ``text/plain`` one.

aiohttp answers those from ``RequestHandler.handle_error``, per connection; the runner below
makes its server create connections with the override.
"""

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from common.logs import fields
from gateway.web import ERROR_CODES, error_response

log = logging.getLogger(__name__)


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("http.protocol_error", exc_info=exc, extra=fields(status=status))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("http.malformed", extra=fields(status=status, error=message))
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started: no error answer can follow")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
        text = " ".join((message or phrase).split())[:300]
        if status >= 500:
            text = phrase
        response = error_response(status, ERROR_CODES.get(status, "http_error"), f"malformed HTTP request: {text}")
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An ``AppRunner`` whose protocol-level errors are JSON error bodies."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app makes its Server (request factory, handler, settings); only the connections'
        # class changes.
        server.__class__ = _JsonErrorServer
        return server
