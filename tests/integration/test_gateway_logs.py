"""Live logs over Server-Sent Events, from Logs events published into the events stream (the
test plays the node agent): a reader connecting after, during and before the run sees every
line once, in order, then ``end``; keepalives; 404; and a gateway stop that closes streams."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway import Gateway
from schemas import CallStatus, JobStatus, Layout
from tests.integration.test_gateway_jobs_support import (
    SseReader,
    StoreState,
    fake_job_store,
    job_record,
    publish_call_finished,
    publish_job_finished,
    publish_logs,
)
from tests.integration.test_gateway_support import fake_store, running_gateway

FOLLOW = {"follow": "true"}


@pytest.fixture
async def gw(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientSession]]:
    async with running_gateway(nats_server, layout, store_timeout_s=0.5, callbacks=False, sse_keepalive_s=0.2) as pair:
        yield pair


@pytest.fixture
def http(gw: tuple[Gateway, aiohttp.ClientSession]) -> aiohttp.ClientSession:
    return gw[1]


async def test_after_the_run_the_stream_replays_every_line_once_then_ends(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    await publish_logs(nc, layout, "c1", 0, ["one", "E:warn"])
    await publish_logs(nc, layout, "c1", 1, ["two"])
    await publish_logs(nc, layout, "c1", 1, ["two"])  # a duplicate chunk (a retried publish)
    await publish_logs(nc, layout, "c1", 0, ["late duplicate"])  # an older chunk
    await publish_call_finished(nc, layout, "c1", CallStatus.DONE)
    async with http.get("/v1/calls/c1/logs", params=FOLLOW) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines, end = await SseReader(r).until_end()
        assert await r.content.read() == b""  # closed after end
    assert lines == [("stdout", "one"), ("stderr", "E:warn"), ("stdout", "two")]
    assert end is not None and end.data == {"id": "c1", "status": "DONE"}


async def test_during_the_run_old_lines_then_new_ones(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    await publish_logs(nc, layout, "j1", 0, ["before connect"])
    async with http.get("/v1/jobs/j1/logs", headers={"Accept": "text/event-stream"}) as r:
        assert r.status == 200
        reader = SseReader(r)
        first = await reader.next()
        assert first is not None and first.event == "log" and first.data["text"] == "before connect"
        assert set(first.data) == {"at", "stream", "text"}
        await publish_logs(nc, layout, "j1", 1, ["after connect"])
        # A retried attempt starts its chunks from 0 again: they are new.
        await publish_logs(nc, layout, "j1", 0, ["attempt 2"], attempt=2)
        await publish_job_finished(nc, layout, "j1", JobStatus.CANCELLED)
        lines, end = await reader.until_end()
    assert lines == [("stdout", "after connect"), ("stdout", "attempt 2")]
    assert end is not None and end.data["status"] == "CANCELLED"


async def test_before_the_run_the_stream_waits_with_keepalives(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    async with fake_job_store(nc, layout, StoreState(jobs={"jq": job_record("jq")})):
        async with http.get("/v1/jobs/jq/logs", params=FOLLOW) as r:
            assert r.status == 200
            reader = SseReader(r)
            read = asyncio.create_task(reader.until_end())
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while "keepalive" not in reader.comments:
                assert loop.time() < deadline, "no keepalive"
                await asyncio.sleep(0.01)
            await publish_logs(nc, layout, "jq", 0, ["started"])
            await publish_job_finished(nc, layout, "jq")
            lines, end = await asyncio.wait_for(read, 10)
    assert lines == [("stdout", "started")]
    assert end is not None and end.data["status"] == "FINISHED"


async def test_an_unknown_id_is_a_404_and_without_follow_the_store_answers(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    async with fake_job_store(nc, layout), fake_store(nc, layout, []):
        async with http.get("/v1/calls/nobody/logs", params=FOLLOW) as r:
            assert r.status == 404
        async with http.get("/v1/jobs/nobody/logs", params=FOLLOW) as r:
            assert r.status == 404
    async with http.get("/v1/calls/bad.id/logs", params=FOLLOW) as r:
        assert r.status == 404
    async with http.get("/v1/calls/c1/logs", params={"follow": "maybe"}) as r:
        assert r.status == 400


async def test_stopping_the_gateway_closes_open_streams_at_once(
    nats_server: NatsServer, nc: Client, layout: Layout
) -> None:
    await publish_logs(nc, layout, "c9", 0, ["running"])
    async with running_gateway(nats_server, layout, callbacks=False, shutdown_grace_s=30) as (gw, http):
        async with http.get("/v1/calls/c9/logs", params=FOLLOW) as r:
            reader = SseReader(r)
            assert (await reader.next()) is not None
            await asyncio.wait_for(gw.stop(), 5)  # not the 30 s grace
            assert await reader.next() is None
