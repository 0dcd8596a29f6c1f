"""The store's request/reply endpoints on ``nats.micro``: calls, call statistics, logs, jobs,
dead letters.

Errors become micro error replies here and nowhere else: 400 for a request that does not
decode or cannot be answered as asked, 404 for an unknown call or job, 413 for a reply too big
for NATS, 500 for anything else (logged with its traceback). nats.micro awaits a handler inline
per subscription; the queries are single indexed reads, so that does not hold up others long.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.errors import MaxPayloadError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel

from common.logs import fields
from schemas import (
    CallQuery,
    DeadLetterQuery,
    GetCall,
    GetJob,
    GetLogs,
    InvalidMessage,
    JobQuery,
    Layout,
    decode,
    encode,
)
from schemas.stats import StatsQuery
from schemas.tree import GetTree
from store.dead_letter_queries import DeadLetterQueries
from store.errors import BadRequest, NotFound
from store.job_queries import JobQueries
from store.log_queries import LogQueries
from store.queries import CallQueries
from store.stats_queries import StatsQueries

log = logging.getLogger(__name__)

SERVICE_NAME = "faas-store"
SERVICE_VERSION = "0.2.0"


@dataclass(frozen=True)
class Queries:
    calls: CallQueries
    logs: LogQueries
    jobs: JobQueries
    dead_letters: DeadLetterQueries
    stats: StatsQueries


async def start_service(nc: Client, layout: Layout, queries: Queries) -> Service:
    """Start the micro service with its endpoints; stop it with ``await service.stop()``."""

    async def get_call(request: Request) -> None:
        await _answer(request, lambda: queries.calls.get(decode(GetCall, request.data)), _without_params)

    async def call_tree(request: Request) -> None:
        await _answer(request, lambda: queries.calls.tree(decode(GetTree, request.data)))

    async def list_calls(request: Request) -> None:
        await _answer(request, lambda: queries.calls.list(decode(CallQuery, request.data)))

    async def call_stats(request: Request) -> None:
        await _answer(request, lambda: queries.stats.compute(decode(StatsQuery, request.data)))

    async def get_logs(request: Request) -> None:
        await _answer(request, lambda: queries.logs.get(decode(GetLogs, request.data)))

    async def get_job(request: Request) -> None:
        await _answer(request, lambda: queries.jobs.get(decode(GetJob, request.data)))

    async def list_jobs(request: Request) -> None:
        await _answer(request, lambda: queries.jobs.list(decode(JobQuery, request.data)))

    async def list_dead_letters(request: Request) -> None:
        await _answer(request, lambda: queries.dead_letters.list(decode(DeadLetterQuery, request.data)))

    endpoints = {
        "get_call": (layout.store_get_call, get_call),
        "list_calls": (layout.store_list_calls, list_calls),
        "call_stats": (layout.store_call_stats, call_stats),
        "call_tree": (layout.store_call_tree, call_tree),
        "get_logs": (layout.store_get_logs, get_logs),
        "get_job": (layout.store_get_job, get_job),
        "list_jobs": (layout.store_list_jobs, list_jobs),
        "list_dead_letters": (layout.store_list_dead_letters, list_dead_letters),
    }
    service = await add_service(
        nc,
        name=SERVICE_NAME,
        version=SERVICE_VERSION,
        description="call records and statistics, logs, job records, dead letters",
        queue_group=SERVICE_NAME,
    )
    try:
        for name, (subject, handler) in endpoints.items():
            await service.add_endpoint(name=name, subject=subject, handler=handler)
        await _flush_subscriptions(nc)
    except BaseException:
        await service.stop()
        raise
    return service


async def _flush_subscriptions(nc: Client) -> None:
    """Return only once the server has the endpoints' SUBs: a request sent right away, from
    any connection, then finds a responder instead of a 503 "no responders".

    nats-py 2.16 ``flush()`` writes its PING straight to the socket while SUBs wait in the
    client's pending buffer for the flusher task, so one PONG can come back before the SUBs
    were even sent. During that first round trip the flusher runs; the second PING follows
    the SUBs on the wire, and its PONG proves the server processed them.
    """
    await nc.flush()
    await nc.flush()


def _without_params(record: BaseModel) -> BaseModel:
    return record.model_copy(update={"params": None, "params_omitted": True})


async def _answer(
    request: Request,
    run: Callable[[], Awaitable[BaseModel]],
    smaller: Callable[[BaseModel], BaseModel] | None = None,
) -> None:
    """``smaller``: what to answer instead when the reply would not fit in a NATS message."""
    try:
        reply = await run()
    except (InvalidMessage, BadRequest) as err:
        await request.respond_error("400", _header_safe(str(err)))
    except NotFound as err:
        await request.respond_error("404", _header_safe(str(err)))
    except Exception:
        # Handler boundary: one bad query must not take the endpoint down.
        log.exception("store.query.failed", extra=fields(subject=request.subject))
        await request.respond_error("500", "internal error: see the store's log")
    else:
        try:
            try:
                await request.respond(encode(reply))
            except MaxPayloadError:
                if smaller is None:
                    raise
                await request.respond(encode(smaller(reply)))
        except MaxPayloadError:
            # A page of big params/results can outgrow the server's max_payload (1 MB default).
            await request.respond_error("413", "the reply exceeds the NATS max payload: lower the limit")


def _header_safe(description: str) -> str:
    # The description travels in a NATS header and may quote the request (a call id, say):
    # a line break there would end the header block.
    return " ".join(description.split())[:1024]
