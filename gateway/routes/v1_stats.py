"""``GET /v1/stats``: what the dashboard's overview charts: calls per second, latency
percentiles and the latest failures (the store's records) and the invoke stream's depth."""

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.queue_depth import queue_depths
from gateway.web import json_response, model_json, parse_query
from schemas import Layout
from schemas.stats import Stats, StatsQuery


@documented(
    "Call statistics over a recent window, and the queues now",
    query=StatsQuery,
    answers={200: Stats},
    errors=(400, 502, 503),
)
async def stats(request: web.Request) -> web.Response:
    """Calls that ended in the last ``window_s`` seconds (up to ``until``), in buckets of
    ``step_s``: how many, how many failed (ERROR or TIMEOUT), and the p50/p95/p99 of their
    latency (``finished_at - created_at``); totals over the window; the ``errors`` latest
    failed calls (without params or result); and the messages waiting or running on each
    subject of the invoke stream (``queues``)."""
    d = deps(request)
    query = parse_query(request, StatsQuery)
    calls = await d.store.call_stats(query)
    queues = await queue_depths(d.nc.jetstream(), Layout(d.settings.prefix))
    return json_response(model_json(Stats(**dict(calls), queues=queues)))
