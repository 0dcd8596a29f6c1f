"""``/v1/calls``: the store's records, over NATS request/reply."""

from aiohttp import web

from gateway.deps import deps
from gateway.web import json_response, model_json, parse_model
from schemas import CallQuery, GetCall

_QUERY_FIELDS = ("function", "status", "since", "until", "limit", "cursor")


async def list_calls(request: web.Request) -> web.Response:
    """Query: function, status, since, until (ISO 8601), limit (1-1000), cursor → one page."""
    raw = {k: request.query[k] for k in _QUERY_FIELDS if request.query.get(k)}
    query = parse_model(CallQuery, raw, "query")
    page = await deps(request).store.list_calls(query)
    return json_response({"items": [model_json(c) for c in page.items], "next_cursor": page.next_cursor})


async def get_call(request: web.Request) -> web.Response:
    """``/v1/calls/{id_or_number}``: all digits is a number, anything else an id."""
    key = request.match_info["key"]
    ask = GetCall(number=int(key)) if key.isascii() and key.isdigit() else GetCall(id=key)
    return json_response(model_json(await deps(request).store.get_call(ask)))
