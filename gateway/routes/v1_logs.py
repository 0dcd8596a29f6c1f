"""``GET /v1/calls/{id}/logs`` and ``GET /v1/jobs/{id}/logs``.

Stored output as a JSON ``LogPage`` (``{"id", "lines": [{"at","stream","text"}], "truncated"}``)
from the store; with ``?follow=true`` or ``Accept: text/event-stream``, the live stream
(Server-Sent Events, see ``gateway.log_stream``) from the first line to the end of the run.
"""

from typing import Literal

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import check_id, not_found
from gateway.jobs import JOB_ID
from gateway.log_stream import wants_stream
from gateway.web import json_response, model_json, parse_query
from schemas import GetLogs, LogPage
from schemas.http import IdPath, LogsQuery

_LOGS_ERRORS = (400, 404, 502, 503)


@documented(
    "A call's output (stored, or live)",
    path=IdPath,
    query=LogsQuery,
    answers={200: LogPage},
    errors=_LOGS_ERRORS,
    stream=True,
)
async def call_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "call")


@documented(
    "A job's output (stored, or live)",
    path=IdPath,
    query=LogsQuery,
    answers={200: LogPage},
    errors=_LOGS_ERRORS,
    stream=True,
)
async def job_logs(request: web.Request) -> web.StreamResponse:
    return await _logs(request, "job")


async def _logs(request: web.Request, kind: Literal["call", "job"]) -> web.StreamResponse:
    d = deps(request)
    id = check_id(kind, request.match_info["id"])
    if kind == "call" and JOB_ID.match(id):
        # The store keeps the logs of calls and jobs by id alone: a job's are not read as a
        # call's, where a token that may read calls but not jobs (role invoke) would see them.
        raise not_found(f"no call {id!r}")
    if wants_stream(request, parse_query(request, LogsQuery).follow):
        return await d.log_streams.serve(request, id, kind)
    return json_response(model_json(await d.store.get_logs(GetLogs(id=id))))
