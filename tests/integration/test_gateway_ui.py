"""The dashboard's static files (``/ui/``, ``/docs``: public, under a Content-Security-Policy)
and ``GET /v1/stats`` (the store's call statistics and the invoke stream's depth). A real
nats-server, store (SQLite) and gateway; no agent (calls queue). The pages themselves are
driven in a real browser by tests/e2e/test_dashboard.py."""

import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client
from yarl import URL

from common.natsserver import NatsServer
from gateway import Gateway
from gateway.routes.ui import CONTENT_SECURITY_POLICY
from schemas import Accepted, CallStatus, ErrorInfo, Finished, Layout
from store import Store
from tests.integration.test_gateway_support import (
    CODE,
    bearer,
    issue_token,
    make_zip,
    module_form,
    running_gateway,
    wait_until,
)
from tests.integration.test_store_support import publish, store_settings

Platform = tuple[Gateway, aiohttp.ClientSession]


@pytest.fixture
async def platform(nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path) -> AsyncIterator[Platform]:
    async with (
        Store(store_settings(nats_server, layout, tmp_path, linger_s=0)),
        running_gateway(nats_server, layout, callbacks=False) as (gw, http),
    ):
        yield gw, http


async def test_the_pages_are_public_and_carry_the_security_headers(platform: Platform) -> None:
    gw, _ = platform
    async with aiohttp.ClientSession(gw.url, auto_decompress=False) as anonymous:
        bodies: dict[str, bytes] = {}
        async with anonymous.get("/ui", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["Location"] == "/ui/"
        for path, ctype in (
            ("/ui/", "text/html"),
            ("/ui/js/main.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
            ("/ui/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
            ("/docs", "text/html"),
            ("/ui/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
        ):
            async with anonymous.get(path, headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200, path
                assert r.content_type == ctype, path
                assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert "Content-Encoding" not in r.headers
                plain = bodies[path] = await r.read()
            # Gzipped when the client takes it (from 1 KiB); an unchanged file is a 304 by its ETag.
            async with anonymous.get(path, headers={"Accept-Encoding": "gzip"}) as r:
                body = await r.read()
                if len(plain) >= 1024:
                    assert r.headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == plain, path
                else:
                    assert body == plain, path
                etag = r.headers["ETag"]
            async with anonymous.get(path, headers={"If-None-Match": etag}) as r:
                assert r.status == 304 and not await r.read()
        for page in (bodies["/ui/"].decode(), bodies["/docs"].decode()):
            assert "<script>" not in page and "<style" not in page and " style=" not in page  # the CSP allows none
        for path in ("/ui/nope.js", "/ui/README.md", "/ui/%2e%2e/assets.py", "/ui/..%2f..%2fsettings.py"):
            async with anonymous.get(URL(gw.url + path, encoded=True)) as r:
                assert r.status == 404, path
                assert (await r.json())["error"]["code"] == "not_found"
        # The data stays behind the token.
        async with anonymous.get("/v1/stats") as r:
            assert r.status == 401


async def test_the_pages_requests_pass_the_cross_site_check(platform: Platform) -> None:
    """What the dashboard's fetch() sends (same Origin as the Host, Sec-Fetch-Site:
    same-origin, the bearer token) passes; the same from another site is refused."""
    gw, http = platform
    host = gw.url.removeprefix("http://")
    same = {"Origin": gw.url, "Sec-Fetch-Site": "same-origin", "Host": host}
    async with http.get("/v1/nodes", headers=same) as r:
        assert r.status == 200, await r.text()
    async with http.post("/v1/tokens", json={"role": "read"}, headers=same) as r:
        assert r.status == 201, await r.text()
    other = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Host": host}
    async with http.get("/v1/nodes", headers=other) as r:
        assert r.status == 403


def _call(number: int, ended_s_ago: float, latency_ms: float, status: CallStatus) -> list[Accepted | Finished]:
    end = datetime.now(UTC) - timedelta(seconds=ended_s_ago)
    start = end - timedelta(milliseconds=latency_ms)
    error = None if status is CallStatus.DONE else ErrorInfo(type="Boom", message="it broke")
    call_id = f"s{number}"
    return [
        Accepted(call_id=call_id, number=number, at=start, function="f", runtime="rt"),
        Finished(call_id=call_id, number=number, at=end, status=status, error=error),
    ]


async def test_stats_count_the_store_records_and_the_queues(platform: Platform, nc: Client, layout: Layout) -> None:
    gw, http = platform
    events = [
        *_call(1, 20, 100, CallStatus.DONE),
        *_call(2, 15, 300, CallStatus.ERROR),
        *_call(3, 900, 5, CallStatus.DONE),  # before the window
    ]
    await publish(nc, layout, events)
    # Two queued calls of runtime rt (no agent takes them).
    async with http.post("/v1/runtimes", json={"name": "rt", "image": "faas-python", "run": "python3 main.py"}) as r:
        assert r.status == 201, await r.text()
    async with http.post("/v1/functions", data=module_form(make_zip(CODE), name="f", runtime="rt")) as r:
        assert r.status == 201, await r.text()
    for _ in range(2):
        async with http.post("/v1/functions/f/invoke?async=true", json={}) as r:
            assert r.status == 202, await r.text()

    async def stats() -> dict:  # type: ignore[type-arg]
        async with http.get("/v1/stats", params={"window_s": "60", "step_s": "10"}) as r:
            assert r.status == 200, await r.text()
            body: dict = await r.json()  # type: ignore[type-arg]
            return body

    async def counted() -> bool:
        return (await stats())["finished"] == 2

    await wait_until(counted, what="the store has the two calls of the window")
    body = await stats()
    assert len(body["buckets"]) == 6 and sum(b["calls"] for b in body["buckets"]) == 2
    assert sum(b["errors"] for b in body["buckets"]) == 1
    assert body["by_status"] == {"DONE": 1, "ERROR": 1}
    assert body["p50_ms"] == pytest.approx(100, abs=1) and body["p99_ms"] == pytest.approx(300, abs=1)
    assert [(e["number"], e["error"]["type"]) for e in body["recent_errors"]] == [(2, "Boom")]
    assert body["queues"] == [
        {"subject": f"{layout.prefix}.invoke.rt.rt", "kind": "runtime", "name": "rt", "messages": 2}
    ]
    # Who may read calls may read their statistics: read and invoke tokens.
    for role in ("read", "invoke"):
        token = await issue_token(http, role)
        async with aiohttp.ClientSession(gw.url, headers=bearer(token)) as other:
            async with other.get("/v1/stats") as r:
                assert r.status == 200, (role, await r.text())
    for query in ({"window_s": "5"}, {"window_s": "3600", "step_s": "1"}, {"until": "yesterday"}):
        async with http.get("/v1/stats", params=query) as r:
            assert r.status == 400, query
