"""Questions to the store service over NATS request/reply (nats.micro error headers)."""

import asyncio
import logging
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER
from pydantic import BaseModel

from common.logs import fields
from gateway.errors import GatewayError, bad_request, nats_unavailable, not_found
from schemas import (
    CallPage,
    CallQuery,
    CallRecord,
    GetCall,
    GetJob,
    GetLogs,
    InvalidMessage,
    JobPage,
    JobQuery,
    JobRecord,
    Layout,
    LogPage,
    decode,
    encode,
)
from schemas.stats import CallStats, StatsQuery
from schemas.tree import CallTree, GetTree

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

_NO_RESPONDERS_RETRY_S = 0.05


class StoreClient:
    def __init__(self, nc: Client, layout: Layout, timeout_s: float) -> None:
        self._nc = nc
        self._layout = layout
        self._timeout_s = timeout_s

    async def get_call(self, key: GetCall) -> CallRecord:
        return await self._ask(self._layout.store_get_call, key, CallRecord)

    async def list_calls(self, query: CallQuery) -> CallPage:
        """A page of at most ``query.limit`` calls: fewer when that many would not fit in one
        NATS reply (large params or results), with ``next_cursor`` for the rest."""
        while True:
            try:
                return await self._ask(self._layout.store_list_calls, query, CallPage)
            except _ReplyTooLarge:
                query = _smaller(query)

    async def call_tree(self, key: GetTree) -> CallTree:
        """A call's tree (flat, by number): its root and the calls nested under it."""
        return await self._ask(self._layout.store_call_tree, key, CallTree)

    async def get_job(self, key: GetJob) -> JobRecord:
        return await self._ask(self._layout.store_get_job, key, JobRecord)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Like :meth:`list_calls`: a page that fits in a NATS reply."""
        while True:
            try:
                return await self._ask(self._layout.store_list_jobs, query, JobPage)
            except _ReplyTooLarge:
                query = _smaller(query)

    async def call_stats(self, query: StatsQuery) -> CallStats:
        """Calls per second, latency percentiles and the latest failures over a window."""
        return await self._ask(self._layout.store_call_stats, query, CallStats)

    async def get_logs(self, key: GetLogs) -> LogPage:
        """The stored output of a call or a job."""
        return await self._ask(self._layout.store_get_logs, key, LogPage)

    async def all_calls(self, cap: int = 10_000) -> list[CallRecord]:
        """Every call the store knows, newest first, paging through up to ``cap`` records."""
        calls: list[CallRecord] = []
        cursor: str | None = None
        limit = 1000
        while len(calls) < cap:
            asked = min(limit, cap - len(calls))
            page = await self.list_calls(CallQuery(limit=asked, cursor=cursor))
            calls.extend(page.items)
            if page.next_cursor and 0 < len(page.items) < asked:
                limit = len(page.items)  # pages were cut to fit a NATS reply: ask for what fits
            cursor = page.next_cursor
            if not cursor or not page.items:
                break
        return calls[:cap]

    async def _ask(self, subject: str, request: BaseModel, answer: type[M]) -> M:
        data = encode(request)
        with nats_unavailable("the store service"):
            try:
                reply = await self._nc.request(subject, data, timeout=self._timeout_s)
            except NoRespondersError:
                # A store that has just (re)subscribed can still be reported as absent for a
                # moment (seen with nats-server 2.15 right after the SUB): one quick retry.
                await asyncio.sleep(_NO_RESPONDERS_RETRY_S)
                reply = await self._nc.request(subject, data, timeout=self._timeout_s)
        _raise_service_error(reply)
        try:
            return decode(answer, reply.data)
        except InvalidMessage as err:
            log.error("store.reply.invalid", extra=fields(subject=subject, error=str(err)))
            raise GatewayError(502, "bad_gateway", f"the store answered with an invalid {answer.__name__}") from None


class _ReplyTooLarge(GatewayError):
    """The store's answer would not fit in a NATS message (its 413)."""


Q = TypeVar("Q", CallQuery, JobQuery)


def _smaller(query: Q) -> Q:
    """The same query for half as many records; a single record that does not fit is a 502."""
    if query.limit <= 1:
        raise GatewayError(502, "bad_gateway", "the store cannot answer one record in a NATS reply (too large)")
    limit = query.limit // 2
    log.info("store.page_halved", extra=fields(limit=limit))
    return query.model_copy(update={"limit": limit})


def _raise_service_error(reply: Msg) -> None:
    headers = reply.headers or {}
    code = headers.get(ERROR_CODE_HEADER)
    if not code:
        return
    message = headers.get(ERROR_HEADER) or "store error"
    if code == "404":
        raise not_found(message)
    if code == "400":
        raise bad_request(message)
    if code == "413":
        raise _ReplyTooLarge(502, "bad_gateway", message)
    raise GatewayError(502, "bad_gateway", f"the store failed: {code} {message}")
