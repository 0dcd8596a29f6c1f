"""Helpers for the store integration tests (no tests here): publishing call events, asking
the store over request/reply, polling with a deadline, and making stores that are always
stopped."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from pydantic import BaseModel

from common.natsserver import NatsServer
from schemas import (
    Accepted,
    CallEvent,
    CallPage,
    CallQuery,
    CallRecord,
    CallStatus,
    ErrorInfo,
    Finished,
    GetCall,
    Layout,
    Started,
    decode,
    encode,
)
from store import Store, StoreSettings
from store.events import StoreEvent, event_id
from tests.natsusers import service_settings

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

StoreFactory = Callable[..., Store]


def store_settings(server: NatsServer, layout: Layout, tmp_path: Path, **kw: Any) -> StoreSettings:
    """Settings for a test: short fetch timeout (burst mode ends quickly), quick redelivery."""
    base: dict[str, Any] = dict(
        **service_settings(server, "store"),
        prefix=layout.prefix,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/db/faas.db",
        fetch_timeout_s=0.25,
        retry_delay_s=0.05,
        stop_grace_s=5.0,
        metrics_port=0,
    )
    return StoreSettings(**{**base, **kw})


@asynccontextmanager
async def store_factory() -> AsyncIterator[StoreFactory]:
    """Make stores that are stopped on exit whatever the test did."""
    made: list[Store] = []

    def make(settings: StoreSettings, **kw: Any) -> Store:
        store = Store(settings, **kw)
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.stop()


async def publish(nc: Client, layout: Layout, events: Sequence[CallEvent]) -> None:
    js = nc.jetstream()
    for event in events:
        await js.publish(layout.event(event.call_id, event.kind), encode(event))


def story(
    call_id: str,
    number: int,
    *,
    function: str = "dice",
    end: CallStatus | None = CallStatus.DONE,
    started: bool = True,
) -> list[CallEvent]:
    at = T0 + timedelta(minutes=number)
    events: list[CallEvent] = [
        Accepted(
            call_id=call_id,
            number=number,
            at=at,
            function=function,
            version=1,
            runtime="python3",
            params={"n": number},
        ),
    ]
    if started:
        events.append(
            Started(
                call_id=call_id,
                number=number,
                at=at + timedelta(seconds=1),
                node="node-1",
                container=f"ctr-{call_id}",
            )
        )
    if end is not None:
        error = None if end is CallStatus.DONE else ErrorInfo(type="Failure", message=f"{call_id} failed")
        events.append(
            Finished(
                call_id=call_id,
                number=number,
                at=at + timedelta(seconds=2),
                status=end,
                result={"roll": number % 6 + 1} if error is None else None,
                error=error,
                exit_code=0 if error is None else 1,
                duration_ms=3.5,
            )
        )
    return events


async def ask(nc: Client, subject: str, payload: bytes) -> Msg:
    return await nc.request(subject, payload, timeout=5)


def service_error(msg: Msg) -> tuple[str, str] | None:
    headers = msg.headers or {}
    if "Nats-Service-Error-Code" not in headers:
        return None
    return headers["Nats-Service-Error-Code"], headers["Nats-Service-Error"]


async def get_call(nc: Client, layout: Layout, **key: Any) -> CallRecord:
    msg = await ask(nc, layout.store_get_call, encode(GetCall(**key)))
    assert service_error(msg) is None, service_error(msg)
    return decode(CallRecord, msg.data)


async def find_call(nc: Client, layout: Layout, **key: Any) -> CallRecord | None:
    """The record, or None while the store does not know the call (404) or is not there."""
    try:
        msg = await ask(nc, layout.store_get_call, encode(GetCall(**key)))
    except (NoRespondersError, nats.errors.TimeoutError):
        return None
    error = service_error(msg)
    if error is not None:
        assert error[0] == "404", error
        return None
    return decode(CallRecord, msg.data)


async def done_call(nc: Client, layout: Layout, call_id: str) -> CallRecord | None:
    record = await find_call(nc, layout, id=call_id)
    return record if record is not None and record.status is CallStatus.DONE else None


async def list_calls(nc: Client, layout: Layout, query: CallQuery) -> CallPage:
    msg = await ask(nc, layout.store_list_calls, encode(query))
    assert service_error(msg) is None, service_error(msg)
    return decode(CallPage, msg.data)


async def list_all(nc: Client, layout: Layout, query: CallQuery) -> list[CallRecord]:
    """Follow next_cursor to the end; also checks that pages never overlap."""
    items: list[CallRecord] = []
    while True:
        page = await list_calls(nc, layout, query)
        assert len(page.items) <= query.limit
        items += page.items
        if page.next_cursor is None:
            return items
        assert len(page.items) == query.limit
        query = query.model_copy(update={"cursor": page.next_cursor})


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll ``check`` until it returns something other than None, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def consumer_settled(nc: Client, layout: Layout) -> bool | None:
    """True once the store's consumer has nothing pending or unacknowledged."""
    info = await nc.jetstream().consumer_info(layout.events_stream, layout.store_consumer)
    return True if info.num_pending == 0 and info.num_ack_pending == 0 else None


async def publish_any(nc: Client, layout: Layout, events: Sequence[StoreEvent]) -> None:
    """Call and job events alike, each on ``<prefix>.events.<id>.<kind>``."""
    js = nc.jetstream()
    for event in events:
        await js.publish(layout.event(event_id(event), event.kind), encode(event))


async def ask_for(nc: Client, subject: str, request: BaseModel, answer: type[M]) -> M:
    msg = await ask(nc, subject, encode(request))
    assert service_error(msg) is None, service_error(msg)
    return decode(answer, msg.data)
