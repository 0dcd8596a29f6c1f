"""The store's request/reply endpoints on ``nats.micro``: get a call, list calls.

Errors become micro error replies here and nowhere else: 400 for a request that does not
decode or cannot be answered as asked, 404 for an unknown call, 413 for a reply too big for
NATS, 500 for anything else (logged with its traceback). nats.micro awaits a handler inline
per subscription; the queries are single indexed reads, so that does not hold up others long.
"""

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.errors import MaxPayloadError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel

from common.logs import fields
from schemas import CallQuery, GetCall, InvalidMessage, Layout, decode, encode
from store.errors import BadRequest, NotFound
from store.queries import CallQueries

log = logging.getLogger(__name__)

SERVICE_NAME = "faas-store"
SERVICE_VERSION = "0.1.0"


async def start_service(nc: Client, layout: Layout, queries: CallQueries) -> Service:
    """Start the micro service with its two endpoints; stop it with ``await service.stop()``."""

    async def get_call(request: Request) -> None:
        await _answer(request, lambda: queries.get(decode(GetCall, request.data)))

    async def list_calls(request: Request) -> None:
        await _answer(request, lambda: queries.list(decode(CallQuery, request.data)))

    service = await add_service(
        nc,
        name=SERVICE_NAME,
        version=SERVICE_VERSION,
        description="call records",
        queue_group=SERVICE_NAME,
    )
    try:
        await service.add_endpoint(name="get_call", subject=layout.store_get_call, handler=get_call)
        await service.add_endpoint(name="list_calls", subject=layout.store_list_calls, handler=list_calls)
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


async def _answer(request: Request, run: Callable[[], Awaitable[BaseModel]]) -> None:
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
            await request.respond(encode(reply))
        except MaxPayloadError:
            # A page of big params/results can outgrow the server's max_payload (1 MB default).
            await request.respond_error("413", "the reply exceeds the NATS max payload: lower the limit")


def _header_safe(description: str) -> str:
    # The description travels in a NATS header and may quote the request (a call id, say):
    # a line break there would end the header block.
    return " ".join(description.split())[:1024]
