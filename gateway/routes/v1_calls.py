"""``/v1/calls``: the store's records, over NATS request/reply; cancel a call."""

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import check_id, not_found
from gateway.web import json_response, model_json, parse_query
from schemas import CallPage, CallQuery, CallRecord, GetCall
from schemas.calls import MAX_NUMBER
from schemas.http import CallKeyPath, CancelRequested, IdPath
from schemas.tree import GetTree, TreeAnswer, nest


@documented("A page of calls, newest first", query=CallQuery, answers={200: CallPage}, errors=(400, 502, 503))
async def list_calls(request: web.Request) -> web.Response:
    """Query: function, status, since, until (ISO 8601), limit (1-1000), cursor → one page."""
    query = parse_query(request, CallQuery)
    page = await deps(request).store.list_calls(query)
    return json_response({"items": [model_json(c) for c in page.items], "next_cursor": page.next_cursor})


@documented("One call, by id or number", path=CallKeyPath, answers={200: CallRecord}, errors=(404, 502, 503))
async def get_call(request: web.Request) -> web.Response:
    """``/v1/calls/{id_or_number}``: all digits is a number, anything else an id."""
    key = check_id("call", request.match_info["key"])
    if key.isdigit():
        if int(key) > MAX_NUMBER:
            raise not_found(f"no call {key[:30]}...: call numbers end at {MAX_NUMBER}")
        ask = GetCall(number=int(key))
    else:
        ask = GetCall(id=key)
    return json_response(model_json(await deps(request).store.get_call(ask)))


@documented("Cancel a call", path=IdPath, answers={202: CancelRequested}, errors=(404, 409, 502, 503))
async def cancel(request: web.Request) -> web.Response:
    """``POST /v1/calls/{id}/cancel`` → 202 ``{"id", "status"}``: CANCELLED at once if the call
    was queued (it never runs), else RUNNING until its node has stopped its container (its
    record then ends CANCELLED, with its logs so far). 404 unknown, 409 already ended."""
    call_id = request.match_info["id"]
    status = await deps(request).call_cancels.cancel(call_id)
    return json_response(
        {"id": call_id, "status": status.value, "cancel_requested": True},
        status=202,
        headers={"Location": f"/v1/calls/{call_id}"},
    )


@documented(
    "A call's tree: its root and every call nested under it",
    path=IdPath,
    answers={200: TreeAnswer},
    errors=(404, 502, 503),
)
async def call_tree(request: web.Request) -> web.Response:
    """``/v1/calls/{id}/tree``: the tree the call belongs to, from its root, each call with
    its status, duration and ``children`` (by call number); at most 2000 calls (``truncated``)."""
    call_id = check_id("call", request.match_info["id"])
    tree = await deps(request).store.call_tree(GetTree(id=call_id))
    return json_response(model_json(nest(tree)))
