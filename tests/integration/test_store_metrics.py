"""The store's ``GET /metrics`` against a real nats-server: events published move the
backlog and its lag, a burst of ingest moves them back and counts what it stored, and job
records are counted by status."""

from pathlib import Path

import aiohttp
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from common.natsserver import NatsServer
from schemas import JobStatus, Layout
from store import Store
from tests.integration.test_store_events import job_story
from tests.integration.test_store_support import eventually, publish_any, store_settings, story

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_the_store_reports_its_backlog_what_it_stored_and_jobs_by_status(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    settings = store_settings(nats_server, layout, tmp_path, linger_s=0)
    async with Store(settings, background_ingest=False) as store, aiohttp.ClientSession() as http:
        assert store.metrics_server is not None
        url = store.metrics_server.url
        before = await scrape(http, url)
        assert before[("faas_store_events_total", ())] == 0
        assert before[("faas_store_ingest_pending", ())] == 0
        assert before[("faas_store_ingest_lag_seconds", ())] == 0

        events = [
            *story("c1", 1),
            *story("c2", 2, end=None),
            *job_story("j1", 1, 1),
            *job_story("j2", 2, 2, end=JobStatus.ERROR),
            *job_story("j3", 3, 3, end=None),
        ]
        await publish_any(nc, layout, events)

        async def backlog() -> Samples | None:
            s = await scrape(http, url)
            return s if s[("faas_store_ingest_pending", ())] == len(events) else None

        waiting = await eventually(backlog)
        assert waiting[("faas_store_ingest_lag_seconds", ())] > 0  # the first event's age
        assert waiting[("faas_store_events_total", ())] == 0

        assert await store.run_until_idle() == len(events)

        async def stored() -> Samples | None:
            s = await scrape(http, url)
            settled = s[("faas_store_ingest_pending", ())] == 0 and s[("faas_store_ingest_unacked", ())] == 0
            return s if settled and s[("faas_jobs", (("status", "RUNNING"),))] == 1 else None

        after = await eventually(stored)
        assert after[("faas_store_events_total", ())] == len(events)
        assert after[("faas_store_batches_total", ())] >= 1
        assert after[("faas_store_ingest_lag_seconds", ())] == 0
        assert after[("faas_store_dead_letters_total", ())] == 0
        jobs = {status.value: after[("faas_jobs", (("status", status.value),))] for status in JobStatus}
        assert jobs == {"QUEUED": 0, "RUNNING": 1, "FINISHED": 1, "ERROR": 1, "TIMEOUT": 0, "CANCELLED": 0}

        async with http.get(url.replace("/metrics", "/healthz")) as r:
            assert r.status == 200
