"""The store against a real nats-server: events in through JetStream, records out over
request/reply, on SQLite and PostgreSQL (when configured: see tests/unit/test_store_backends).
Burst mode (``run_until_idle``) drives ingestion, so nothing waits on a clock."""

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client
from sqlalchemy.exc import OperationalError

from schemas import Accepted, CallEvent, CallQuery, CallStatus, ErrorInfo, Finished, GetCall, Layout, encode
from store import StoreSettings
from store.db import make_engine, make_sessions
from store.deadletter import DeadLetter
from store.events import StoreEvent
from store.ingest import Ingest, IngestConfig
from store.migrate import migrate
from store.queries import CallQueries
from store.writer import EventWriter
from tests.integration.store_fixtures import settings, stores  # noqa: F401 (fixtures)
from tests.integration.test_store_support import (
    T0,
    StoreFactory,
    ask,
    consumer_settled,
    eventually,
    get_call,
    list_all,
    list_calls,
    publish,
    service_error,
    story,
)

# --- get --------------------------------------------------------------------------------------


async def test_get_by_id_and_by_number(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    a, b = story("call-a", 1), story("call-b", 2, end=CallStatus.ERROR)
    await publish(nc, layout, [a[2], b[0], a[1], b[1], a[0], a[2], b[2]])  # out of order, a duplicate
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == 7

    record = await get_call(nc, layout, id="call-a")
    assert record.status is CallStatus.DONE
    assert (record.number, record.function, record.version, record.runtime) == (1, "dice", 1, "python3")
    assert record.params == {"n": 1} and record.result == {"roll": 2}
    assert (record.node, record.container, record.attempts) == ("node-1", "ctr-call-a", 1)
    assert record.created_at == T0 + timedelta(minutes=1)
    assert record.finished_at == T0 + timedelta(minutes=1, seconds=2)
    assert await get_call(nc, layout, number=1) == record

    failed = await get_call(nc, layout, number=2)
    assert failed.id == "call-b" and failed.status is CallStatus.ERROR
    assert failed.error == ErrorInfo(type="Failure", message="call-b failed") and failed.exit_code == 1


async def test_get_unknown_call_is_404(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    await stores(settings, background_ingest=False).start()
    msg = await ask(nc, layout.store_get_call, encode(GetCall(id="missing")))
    assert service_error(msg) == ("404", "call missing not found")
    msg = await ask(nc, layout.store_get_call, encode(GetCall(number=404)))
    assert service_error(msg) == ("404", "call 404 not found")


@pytest.mark.parametrize(
    ("subject", "payload", "says"),
    [
        ("get", b"{not json", "invalid JSON"),
        ("get", b"", "invalid JSON"),
        ("get", b"{}", "give exactly one of id or number"),
        ("get", b'{"id": "a", "number": 1}', "give exactly one of id or number"),
        ("get", b'{"number": "seven"}', "number"),
        ("list", b"[1, 2", "invalid JSON"),
        ("list", b'{"limit": 0}', "limit"),
        ("list", b'{"status": "SLEEPING"}', "status"),
        ("list", b'{"cursor": "not a cursor"}', "invalid cursor"),
    ],
)
async def test_invalid_requests_are_400(
    nc: Client,
    layout: Layout,
    settings: StoreSettings,
    stores: StoreFactory,
    subject: str,
    payload: bytes,
    says: str,
) -> None:
    await stores(settings, background_ingest=False).start()
    target = layout.store_get_call if subject == "get" else layout.store_list_calls
    error = service_error(await ask(nc, target, payload))
    assert error is not None
    assert error[0] == "400"
    assert says in error[1]


# --- list -------------------------------------------------------------------------------------


async def test_list_with_filters_and_cursor_pages(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    events: list[CallEvent] = []
    for n in range(1, 31):
        function = "dice" if n % 3 else "coin"
        end = None if n % 5 == 0 else (CallStatus.ERROR if n % 7 == 0 else CallStatus.DONE)
        events += story(f"c{n:03d}", n, function=function, end=end)
    await publish(nc, layout, events)
    store = stores(settings.model_copy(update={"batch_size": 16}), background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == len(events)

    everything = await list_all(nc, layout, CallQuery(limit=7))
    assert [r.number for r in everything] == list(range(30, 0, -1))

    dice = await list_all(nc, layout, CallQuery(function="dice", limit=4))
    assert [r.number for r in dice] == [n for n in range(30, 0, -1) if n % 3]
    assert all(r.function == "dice" for r in dice)

    running = await list_all(nc, layout, CallQuery(status=CallStatus.RUNNING, limit=2))
    assert [r.number for r in running] == [30, 25, 20, 15, 10, 5]

    errors = await list_calls(nc, layout, CallQuery(status=CallStatus.ERROR, function="dice"))
    assert [r.number for r in errors.items] == [28, 14, 7] and errors.next_cursor is None

    window = CallQuery(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20), limit=3)
    assert [r.number for r in await list_all(nc, layout, window)] == list(range(19, 9, -1))

    first = await list_calls(nc, layout, CallQuery(limit=10))
    assert first.next_cursor is not None
    assert all(str(n) not in first.next_cursor for n in (20, 21))  # opaque, not the number itself

    empty = await list_calls(nc, layout, CallQuery(function="nothing"))
    assert empty.items == [] and empty.next_cursor is None


# --- the stream is never blocked --------------------------------------------------------------


async def test_undecodable_messages_are_terminated(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    js = nc.jetstream()
    await js.publish(layout.event("junk", "accepted"), b"not json at all")
    await js.publish(layout.event("junk", "log"), b'{"call_id": "junk", "number": 1, "kind": "log"}')
    await publish(nc, layout, story("good", 1))
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == 5
    assert (await get_call(nc, layout, id="good")).status is CallStatus.DONE
    assert await eventually(lambda: consumer_settled(nc, layout))


async def test_a_call_number_conflict_terminates_only_the_culprit(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    await publish(
        nc,
        layout,
        [
            Accepted(call_id="first", number=1),
            Accepted(call_id="second", number=2),
            Accepted(call_id="usurper", number=1),  # another call claiming number 1
            Accepted(call_id="third", number=3),
        ],
    )
    store = stores(settings, background_ingest=False)
    await store.start()
    await store.run_until_idle()
    page = await list_calls(nc, layout, CallQuery())
    assert [r.id for r in page.items] == ["third", "second", "first"]
    assert await eventually(lambda: consumer_settled(nc, layout))


class FlakyWriter:
    """Fails its first transaction as a locked database would."""

    def __init__(self, inner: EventWriter) -> None:
        self.inner = inner
        self.calls = 0
        self.failed = 0  # events of the failed transaction

    async def apply(self, events: Sequence[StoreEvent]) -> int:
        self.calls += 1
        if self.calls == 1:
            self.failed = len(events)
            raise OperationalError("INSERT ...", None, Exception("database is locked"))
        return await self.inner.apply(events)

    async def dead_letter(self, letter: DeadLetter) -> None:
        raise AssertionError(f"nothing is set aside while the database is unavailable: {letter}")


async def test_a_batch_is_retried_while_the_database_is_unavailable(
    nc: Client, layout: Layout, tmp_path: Path, store_nc: Client
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/flaky.db")
    await migrate(engine)
    writer = FlakyWriter(EventWriter(engine))
    ingest = Ingest(store_nc, layout, writer, IngestConfig(fetch_timeout_s=0.5, retry_delay_s=0.05))
    try:
        await ingest.subscribe()
        await publish(nc, layout, story("a", 1) + story("b", 2))
        handled = await ingest.run_until_idle()
        # The first batch fails, is retried in the process (not redelivered: no delivery
        # spent), and all six are applied.
        assert writer.failed >= 1
        assert handled == 6
        assert writer.calls >= 2 and ingest.stats.retries == 1
        assert ingest.stats.dead_letters == 0
        page = await CallQueries(make_sessions(engine)).list(CallQuery())
        assert [(r.id, r.status) for r in page.items] == [("b", CallStatus.DONE), ("a", CallStatus.DONE)]
        info = await nc.jetstream().consumer_info(layout.events_stream, layout.store_consumer)
        assert info.num_redelivered == 0
    finally:
        await ingest.close()
        await writer.inner.close()
        await engine.dispose()


async def test_a_page_too_big_for_nats_is_413(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    big = "x" * 400_000
    await publish(
        nc,
        layout,
        [Finished(call_id=f"big{n}", number=n, status=CallStatus.DONE, result=big) for n in range(1, 4)],
    )
    store = stores(settings, background_ingest=False)
    await store.start()
    await store.run_until_idle()
    assert (await get_call(nc, layout, number=2)).result == big
    error = service_error(await ask(nc, layout.store_list_calls, encode(CallQuery())))
    assert error is not None and error[0] == "413"
    assert len((await list_calls(nc, layout, CallQuery(limit=2))).items) == 2


async def test_a_record_too_large_for_one_reply_comes_without_its_params_marked(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    # params and a result each within an event, together over the NATS max payload (1 MiB)
    big = "p" * (700 * 1024)
    accepted, started, finished = story("big", 1)
    events = [
        accepted.model_copy(update={"params": {"big": big}}),
        started,
        finished.model_copy(update={"result": {"r": "r" * (700 * 1024)}}),
    ]
    await publish(nc, layout, events)
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == 3
    record = await get_call(nc, layout, id="big")
    assert record.status is CallStatus.DONE and len(record.result["r"]) == 700 * 1024
    assert record.params is None and record.params_omitted
    small = await get_call(nc, layout, number=1)
    assert small == record  # by number alike
