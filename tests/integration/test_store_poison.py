"""Poison cannot stop the store: events with NUL characters are stored, events the database
refuses (or that do not decode) are set aside as dead letters in the middle of good ones, the
consumer's redelivery is bounded (an existing consumer updated in place), and events deleted
by the stream's limits before the store took them are reported. On SQLite and PostgreSQL
(when configured), against a real nats-server; burst mode drives ingestion."""

import base64
import logging
from datetime import timedelta

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import select

from common.jetstream import LayoutLimits, ensure_layout
from schemas import (
    Accepted,
    CallStatus,
    DeadLetterPage,
    DeadLetterQuery,
    ErrorInfo,
    Finished,
    GetJob,
    JobAccepted,
    JobContainer,
    JobRecord,
    JobSpec,
    Layout,
)
from store import Store, StoreSettings
from store.db import make_engine
from store.rows import NUL_STANDIN
from store.tables import dead_letters
from tests.integration.store_fixtures import settings, stores  # noqa: F401 (fixtures)
from tests.integration.test_store_support import (
    T0,
    StoreFactory,
    ask_for,
    consumer_settled,
    eventually,
    get_call,
    publish,
    publish_any,
    story,
)


async def dead_letter_rows(settings: StoreSettings) -> list[dict[str, object]]:
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(dead_letters).order_by(dead_letters.c.sequence))).mappings().all()
            return [dict(r) for r in rows]
    finally:
        await engine.dispose()


async def no_pull_waiting(nc: Client, layout: Layout) -> bool | None:
    info = await nc.jetstream().consumer_info(layout.events_stream, layout.store_consumer)
    return True if not info.num_waiting else None


def job_with_nul(job_id: str) -> JobAccepted:
    spec = JobSpec(
        name="nul-job",
        description="before\x00after",
        container=JobContainer(image="alpine", command=["echo", "a\x00b"]),
    )
    return JobAccepted(job_id=job_id, number=7, at=T0, spec=spec)


async def test_nul_is_stored_and_refused_events_are_set_aside_in_the_middle_of_good_ones(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    nul_tail = ErrorInfo(type="ExitError", message="Traceback...\x00\x00 stderr tail")
    await publish(nc, layout, story("good-1", 1))
    await publish_any(nc, layout, [job_with_nul("jnul")])
    await publish(
        nc,
        layout,
        [
            Accepted(call_id="nul-call", number=2, function="dice", params={"text": "p\x00q"}),
            Finished(call_id="nul-call", number=2, status=CallStatus.ERROR, error=nul_tail, exit_code=1),
            # A call number no BIGINT (nor SQLite INTEGER) can hold: the database refuses it.
            Accepted(call_id="huge", number=1 << 70, function="dice"),
        ],
    )
    huge_seq = (await js.stream_info(layout.events_stream)).state.last_seq
    junk = b"\xff\xfe not an event \x00"
    junk_ack = await js.publish(layout.event("junk", "accepted"), junk)
    await publish(nc, layout, story("good-2", 3))

    store = stores(settings, background_ingest=False)
    await store.start()
    with caplog.at_level(logging.ERROR, logger="store.ingest"):
        await store.run_until_idle()

    # The good ones are stored, NUL replaced where the column is text, kept in JSON.
    assert (await get_call(nc, layout, id="good-1")).status is CallStatus.DONE
    assert (await get_call(nc, layout, id="good-2")).status is CallStatus.DONE
    failed = await get_call(nc, layout, id="nul-call")
    assert failed.status is CallStatus.ERROR and failed.error is not None
    assert failed.error.message == f"Traceback...{NUL_STANDIN}{NUL_STANDIN} stderr tail"
    assert failed.params == {"text": "p\x00q"}
    job = await ask_for(nc, layout.store_get_job, GetJob(id="jnul"), JobRecord)
    assert job.description == f"before{NUL_STANDIN}after" and job.command == ["echo", "a\x00b"]

    # The bad ones are set aside with their bytes, and acknowledged.
    rows = await dead_letter_rows(settings)
    assert [(r["sequence"], r["subject"]) for r in rows] == [
        (huge_seq, layout.event("huge", "accepted")),
        (junk_ack.seq, layout.event("junk", "accepted")),
    ]
    assert rows[1]["payload"] == junk and "InvalidMessage" in str(rows[1]["error"])
    assert b'"number":1180591620717411303424' in bytes(rows[0]["payload"])  # type: ignore[arg-type]
    assert all(r["stream"] == layout.events_stream and r["deliveries"] == 1 for r in rows)
    assert await eventually(lambda: consumer_settled(nc, layout))
    letters = [r for r in caplog.records if r.getMessage() == "store.dead_letter"]
    assert len(letters) == 2
    assert store.ingest_stats.dead_letters == 2

    # Operators see them over NATS too, newest first, a page at a time.
    page = await ask_for(nc, layout.store_list_dead_letters, DeadLetterQuery(limit=1), DeadLetterPage)
    [newest] = page.items
    assert (newest.sequence, newest.size, newest.payload_truncated) == (junk_ack.seq, len(junk), False)
    assert base64.b64decode(newest.payload_base64) == junk and newest.error.startswith("InvalidMessage")
    assert page.next_cursor is not None
    query = DeadLetterQuery(limit=1, cursor=page.next_cursor)
    page = await ask_for(nc, layout.store_list_dead_letters, query, DeadLetterPage)
    assert [(i.sequence, i.subject) for i in page.items] == [(huge_seq, layout.event("huge", "accepted"))]
    assert page.next_cursor is None

    # Records keep updating: a later event of a stored call, a new call.
    later = Finished(call_id="good-1", number=1, status=CallStatus.DONE, result="again", at=T0 + timedelta(days=1))
    await publish(nc, layout, [later, *story("good-3", 4)])
    await store.run_until_idle()
    assert (await get_call(nc, layout, id="good-3")).status is CallStatus.DONE
    assert len(await dead_letter_rows(settings)) == 2


async def test_a_batch_of_only_good_events_sets_nothing_aside(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    await publish(nc, layout, story("a", 1) + story("b", 2))
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == 6
    assert await dead_letter_rows(settings) == []
    assert store.ingest_stats.batches >= 1 and store.ingest_stats.dead_letters == 0


async def test_an_existing_consumer_gets_a_bounded_redelivery_in_place(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    # As an older store made it: no max_deliver.
    js = nc.jetstream()
    old = ConsumerConfig(
        name=layout.store_consumer,
        durable_name=layout.store_consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        filter_subject=layout.events_all,
    )
    await js.add_consumer(layout.events_stream, old)
    await publish(nc, layout, story("kept", 1))
    store = stores(settings.model_copy(update={"max_deliver": 4}), background_ingest=False)
    await store.start()
    info = await js.consumer_info(layout.events_stream, layout.store_consumer)
    assert info.config.max_deliver == 4
    await store.run_until_idle()
    assert (await get_call(nc, layout, id="kept")).status is CallStatus.DONE


async def test_an_event_on_its_last_delivery_is_applied_alone_and_set_aside_if_refused(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    js = nc.jetstream()
    await publish(nc, layout, [Accepted(call_id="huge", number=1 << 70), *story("fine", 1)])
    store = stores(settings.model_copy(update={"max_deliver": 2, "ack_wait_s": 30.0}), background_ingest=False)
    await store.start()
    # A first delivery the store never settles (as if it died with it in hand).
    sub = await js.pull_subscribe_bind(layout.store_consumer, layout.events_stream)
    first = await sub.fetch(4, timeout=5)
    assert [m.metadata.num_delivered for m in first] == [1, 1, 1, 1]
    for msg in first:
        await msg.nak()
    await sub.unsubscribe()
    await store.run_until_idle()
    assert (await get_call(nc, layout, id="fine")).status is CallStatus.DONE
    rows = await dead_letter_rows(settings)
    assert [(r["sequence"], r["deliveries"]) for r in rows] == [(1, 2)]
    assert await eventually(lambda: consumer_settled(nc, layout))


async def test_events_deleted_at_the_stream_limit_before_the_store_took_them_are_reported(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    # A tiny byte cap on the events stream, applied in place to the existing stream.
    await ensure_layout(js, layout, LayoutLimits(events_max_bytes=4096))
    await publish(nc, layout, story("early", 1))
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == 3
    # No pull request open: nothing is delivered until the next fetch.
    assert await eventually(lambda: no_pull_waiting(nc, layout))

    # The store is busy elsewhere (not fetching) while more than the cap is published.
    for i in range(2, 40):
        await publish(nc, layout, story(f"c{i}", i))
    first = (await js.stream_info(layout.events_stream)).state.first_seq
    assert first > 4  # the oldest, never delivered, are gone
    with caplog.at_level(logging.ERROR, logger="store.events_lost"):
        await store.run_until_idle()
    lost = [r for r in caplog.records if r.getMessage() == "store.events_lost"]
    assert len(lost) == 1
    assert lost[0].__dict__["fields"]["from_seq"] == 4 and lost[0].__dict__["fields"]["to_seq"] == first - 1
    assert store._ingest is not None and store._ingest.losses.lost == first - 4
    # What the stream still had is stored.
    assert (await get_call(nc, layout, id="c39")).status is CallStatus.DONE


async def test_events_deleted_while_no_store_ran_are_reported_at_start(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    await ensure_layout(js, layout, LayoutLimits(events_max_bytes=4096))
    store: Store = stores(settings, background_ingest=False)
    await store.start()
    await publish(nc, layout, story("early", 1))
    await store.run_until_idle()
    await store.stop()

    for i in range(2, 40):
        await publish(nc, layout, story(f"c{i}", i))
    first = (await js.stream_info(layout.events_stream)).state.first_seq
    with caplog.at_level(logging.ERROR, logger="store.events_lost"):
        again = stores(settings, background_ingest=False)
        await again.start()
    lost = [r for r in caplog.records if r.getMessage() == "store.events_lost"]
    assert [r.__dict__["fields"]["count"] for r in lost] == [first - 4]
    await again.run_until_idle()
    assert len([r for r in caplog.records if r.getMessage() == "store.events_lost"]) == 1
    assert (await get_call(nc, layout, id="c39")).status is CallStatus.DONE
