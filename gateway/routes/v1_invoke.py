"""``POST /v1/functions/{name}/invoke``: the body is the params JSON (empty = ``{}``).

``?async=true`` → 202 ``{"id","number","status":"QUEUED"}``. Otherwise wait (``?wait=<s>``,
default ``sync_wait_s``, capped at ``max_sync_wait_s``): 200 with the finished call, or 202
with id/number/status if the wait runs out (the call goes on). ``?timeout=<s>`` lowers the
function's timeout for this call.

A callback URL (``?callback_url=`` or the ``X-Callback-Url`` header, http or https) gets the
finished call POSTed to it (the record the sync invoke returns, with ``X-Faas-Call-Id`` and
``X-Faas-Call-Status`` headers), retried with backoff; the outcome becomes a ``callback`` event.
A URL whose host is or resolves to an internal address is refused with 400
(:mod:`gateway.callback_guard`).
"""

from typing import Any

from aiohttp import web

from gateway.apidoc import documented
from gateway.callback_post import check_callback_url
from gateway.deps import deps
from gateway.errors import bad_request
from gateway.invoker import Ticket
from gateway.web import json_response, model_response, parse_query, read_json
from schemas import CallRecord, CallStatus
from schemas.http import InvokeQuery, NamePath, Queued


def _accepted(ticket: Ticket, status: CallStatus) -> web.Response:
    body = ticket.queued(status)
    if ticket.callback_url:
        body["callback_url"] = ticket.callback_url
    return json_response(body, status=202, headers={"Location": f"/v1/calls/{ticket.id}"})


async def _callback_url(request: web.Request, query: InvokeQuery) -> str | None:
    url = query.callback_url or request.headers.get("X-Callback-Url")
    if not url:
        return None
    if problem := check_callback_url(url):
        raise bad_request(f"callback URL {url[:200]!r} {problem}")
    if problem := await deps(request).callback_guard.check_url(url):
        raise bad_request(f"callback URL refused: {problem}")
    return url


@documented(
    "Invoke a function: wait for its result, or ?async=true",
    path=NamePath,
    query=InvokeQuery,
    body=Any,
    answers={200: CallRecord, 202: Queued},
    errors=(404, 503),
)
async def invoke(request: web.Request) -> web.Response:
    """The body is the params JSON (empty: ``{}``). 200 with the finished call, or 202 with its
    id and number when it goes on (``?async=true``, or the wait ran out). A callback URL (query
    ``callback_url`` or header ``X-Callback-Url``) gets the finished call POSTed to it."""
    d = deps(request)
    s = d.settings
    name = request.match_info["name"]
    query = parse_query(request, InvokeQuery)
    callback_url = await _callback_url(request, query)
    params = await read_json(request, s.max_params_bytes, empty={})
    if query.run_async:
        return _accepted(await d.invoker.submit(name, params, query.timeout, callback_url), CallStatus.QUEUED)
    wait_s = min(s.sync_wait_s if query.wait is None else query.wait, s.max_sync_wait_s)
    outcome = await d.invoker.call(name, params, wait_s, query.timeout, callback_url)
    if outcome.record is None:
        return _accepted(outcome.ticket, outcome.status)
    return model_response(outcome.record)
