"""Store lifecycle against a real nats-server: stop and start again, stop under load, stop
with NATS down, and a NATS restart under a running store. Every stop is timed."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.jetstream import ensure_layout
from common.natsserver import NatsServer
from schemas import CallEvent, CallQuery, CallStatus, Layout, Started
from store import Store, StoreSettings
from tests.integration.test_store_support import (
    StoreFactory,
    consumer_settled,
    done_call,
    eventually,
    get_call,
    list_calls,
    publish,
    store_factory,
    store_settings,
    story,
)
from tests.natsusers import connect_as


@pytest.fixture
def settings(nats_server: NatsServer, layout: Layout, tmp_path: Path) -> StoreSettings:
    return store_settings(nats_server, layout, tmp_path)


@pytest.fixture
async def stores() -> AsyncIterator[StoreFactory]:
    async with store_factory() as make:
        yield make


async def test_restarted_store_catches_up_on_what_it_missed(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    await publish(nc, layout, story("before", 1))
    async with stores(settings) as first:
        assert first.tasks  # ingesting in the background

        await eventually(lambda: done_call(nc, layout, "before"))

    # Down: nobody answers, events pile up in the stream for the durable consumer.
    await publish(nc, layout, [*story("during", 2), Started(call_id="before", number=1, node="x", attempt=1)])

    async with stores(settings):
        during = await eventually(lambda: done_call(nc, layout, "during"))
        assert during.number == 2 and during.result == {"roll": 3}
        before = await get_call(nc, layout, id="before")
        assert before.status is CallStatus.DONE and before.result == {"roll": 2}
        assert await eventually(lambda: consumer_settled(nc, layout))


async def test_stop_when_idle_is_prompt_and_idempotent(settings: StoreSettings, nc: Client) -> None:
    store = Store(settings)
    await store.start()
    await store.start()  # idempotent
    started = time.monotonic()
    await store.stop()
    assert time.monotonic() - started < settings.fetch_timeout_s + 2.0
    await store.stop()  # idempotent
    assert len(store.tasks) == 0
    with pytest.raises(RuntimeError):
        await store.start()


async def test_stop_under_load_acks_the_batch_in_hand(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    events: list[CallEvent] = []
    for n in range(1, 401):
        events += story(f"load{n}", n)
    await publish(nc, layout, events)

    # Small batches: the backlog takes well over the moment it takes to see the first ack.
    store = stores(settings.model_copy(update={"batch_size": 8}))
    await store.start()
    # Stop as soon as something has been ingested, in the middle of the backlog.
    while store.ingest_stats.acked == 0:  # noqa: ASYNC110 (no event to wait on: poll the counter)
        await asyncio.sleep(0.001)
    started = time.monotonic()
    await store.stop()
    assert time.monotonic() - started < settings.fetch_timeout_s + 3.0

    # Everything it took was acked: nothing waits for the 30 s ack timeout to be redelivered.
    async def all_acked() -> bool | None:
        info = await nc.jetstream().consumer_info(layout.events_stream, layout.store_consumer)
        return True if info.num_ack_pending == 0 else None

    await eventually(all_acked, timeout=5.0)

    # A new store picks up exactly where the first one stopped.
    rest = stores(settings, background_ingest=False)
    await rest.start()
    # The first store stopped in the middle of the backlog, and nothing was handled twice.
    assert 0 < await rest.run_until_idle() < len(events)
    page = await list_calls(nc, layout, CallQuery(status=CallStatus.DONE, limit=1000))
    assert len(page.items) == 400


# --- NATS going away: a private server, so the session one is never disturbed -----------------


@pytest.fixture
async def own_nats(tmp_path: Path, layout: Layout, nats_passwords: dict[str, str]) -> AsyncIterator[NatsServer]:
    server = NatsServer(tmp_path / "own-nats", passwords=nats_passwords, layout=layout)
    await server.start()
    try:
        # The layout the gateway would have made (the store waits for it).
        admin = await connect_as(server)
        await ensure_layout(admin.jetstream(), layout)
        await admin.close()
        yield server
    finally:
        await server.stop()


async def test_a_store_rides_out_a_nats_restart(
    own_nats: NatsServer, layout: Layout, tmp_path: Path, stores: StoreFactory
) -> None:
    settings = store_settings(own_nats, layout, tmp_path)
    nc = await connect_as(own_nats)
    try:
        await publish(nc, layout, story("before", 1))
        store = stores(settings)
        await store.start()
        await eventually(lambda: done_call(nc, layout, "before"))

        # Same port, same store dir: streams and the durable consumer survive the restart.
        await own_nats.stop()
        await own_nats.start()
        await eventually(lambda: _connected(nc), timeout=15.0)

        await publish(nc, layout, story("after", 2))
        after = await eventually(lambda: done_call(nc, layout, "after"), timeout=15.0)
        assert after.result == {"roll": 3}
        assert not store.tasks.failed.is_set()
    finally:
        await nc.close()


async def _connected(nc: Client) -> bool | None:
    return True if nc.is_connected else None


async def test_stop_with_nats_down_is_prompt(
    own_nats: NatsServer, layout: Layout, tmp_path: Path, stores: StoreFactory
) -> None:
    settings = store_settings(own_nats, layout, tmp_path)
    store = stores(settings)
    await store.start()
    await own_nats.stop()
    started = time.monotonic()
    await store.stop()
    # Nothing to drain: the client is closed instead of reconnecting for ever.
    assert time.monotonic() - started < settings.fetch_timeout_s + 3.0
    assert len(store.tasks) == 0


async def test_a_deleted_consumer_is_made_again(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    await publish(nc, layout, story("before", 1))
    store = stores(settings)
    await store.start()
    await eventually(lambda: done_call(nc, layout, "before"))

    # Someone deletes the durable consumer under the running store: it binds a new one.
    await nc.jetstream().delete_consumer(layout.events_stream, layout.store_consumer)
    await publish(nc, layout, story("after", 2))
    after = await eventually(lambda: done_call(nc, layout, "after"), timeout=15.0)
    assert after.result == {"roll": 3}
    assert not store.tasks.failed.is_set()


async def test_an_idle_store_takes_a_new_event_at_once(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    # A long fetch timeout: the event must wake the waiting pull, not the next poll.
    store = stores(settings.model_copy(update={"fetch_timeout_s": 20.0, "stop_grace_s": 1.0}))
    await store.start()
    # Running: the ingest loop and retention.
    await eventually(lambda: _true_if(store.ingest_stats.acked == 0 and len(store.tasks) == 2))
    started = time.monotonic()
    await publish(nc, layout, story("wake", 1))
    await eventually(lambda: done_call(nc, layout, "wake"), timeout=10.0)
    assert time.monotonic() - started < 5.0


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None
