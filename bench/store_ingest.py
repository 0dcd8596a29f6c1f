"""Sustained ingest of the store: how many events a second it takes from the events stream
into SQLite (and PostgreSQL, given a URL).

    python -m bench.store_ingest                       # SQLite, 50,000 events
    python -m bench.store_ingest --events 100000 --postgres postgresql+asyncpg://u:p@host/db

A private nats-server (port 0, temporary directory) gets N events first: per call accepted,
started, two log chunks of five lines, finished, interleaved as if 200 calls were in flight
(so a batch mixes new and known records, as in production). Then a Store (the real service,
background ingest) drains them; the rate is measured from its first ack to its last. For
PostgreSQL a database is created for the run and dropped after (the role needs CREATEDB).
"""

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from common.jetstream import connect, ensure_layout
from common.logs import setup_logging
from common.natsserver import NatsServer
from schemas import Accepted, CallEvent, CallStatus, Finished, Layout, LogEntry, Logs, Started, encode
from store import Store, StoreSettings

IN_FLIGHT = 200
T0 = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass
class Result:
    backend: str
    events: int
    batch_size: int
    seconds: float  # first ack to last ack
    total_s: float  # store start to last ack (connect, migrate, consume)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def call_events(i: int) -> list[CallEvent]:
    """The five events of call ``i``, in their natural order."""
    call_id, at = f"c{i}", T0 + timedelta(milliseconds=i)
    what = dict(call_id=call_id, number=i, function="dice", version=1, runtime="python3")
    lines = [
        LogEntry(at=at, stream="stdout" if n % 2 else "stderr", text=f"line {n} of call {call_id}: " + "x" * 40)
        for n in range(5)
    ]
    return [
        Accepted(**what, at=at, params={"roll": "4d6", "n": i}),
        Started(**what, at=at + timedelta(milliseconds=1), node="node-1", container=f"ctr-{i}"),
        Logs(**what, at=at + timedelta(milliseconds=2), seq=0, lines=lines),
        Logs(**what, at=at + timedelta(milliseconds=3), seq=1, lines=lines),
        Finished(
            **what,
            at=at + timedelta(milliseconds=4),
            status=CallStatus.DONE,
            result=[3, 1, 4, 1],
            exit_code=0,
            duration_ms=4.2,
            node="node-1",
        ),
    ]


def interleaved(calls: int) -> Iterator[CallEvent]:
    """Event k of call i goes out at step i + k * IN_FLIGHT / 4: calls overlap as if
    IN_FLIGHT of them were running at once."""
    lag = IN_FLIGHT // 4
    per_step: dict[int, list[CallEvent]] = {}
    for i in range(1, calls + 1):
        for k, event in enumerate(call_events(i)):
            per_step.setdefault(i + k * lag, []).append(event)
    for step in sorted(per_step):
        yield from per_step[step]


async def publish(nc: Client, layout: Layout, calls: int) -> int:
    n = 0
    for event in interleaved(calls):
        # Core publish: the stream stores it; no per-message ack round trip to wait for.
        await nc.publish(layout.event(event.call_id, event.kind), encode(event))
        n += 1
        if n % 5000 == 0:
            await nc.flush()
    await nc.flush()
    js = nc.jetstream()
    deadline = time.monotonic() + 60
    while (await js.stream_info(layout.events_stream)).state.messages < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the events stream did not get every event")
        await asyncio.sleep(0.05)
    return n


@asynccontextmanager
async def postgres_database(base_url: str) -> AsyncIterator[str]:
    name = "faas_bench_" + secrets.token_hex(4)
    admin = create_async_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def run_one(server: NatsServer, backend: str, url: str, calls: int, batch_size: int) -> Result:
    layout = Layout(prefix="bench" + secrets.token_hex(3))
    nc = await connect(server.url, "bench")
    try:
        await ensure_layout(nc.jetstream(), layout)
        events = await publish(nc, layout, calls)
    finally:
        await nc.drain()
    settings = StoreSettings(nats_url=server.url, prefix=layout.prefix, database_url=url, batch_size=batch_size)
    started = time.monotonic()
    async with Store(settings) as store:
        deadline = time.monotonic() + 600
        while store.ingest_stats.acked < events:
            if store.tasks.failed.is_set() or time.monotonic() > deadline:
                raise RuntimeError(f"{backend}: ingested {store.ingest_stats.acked} of {events}")
            await asyncio.sleep(0.02)
        stats = store.ingest_stats
    assert stats.first_ack_at is not None and stats.last_ack_at is not None
    return Result(backend, events, batch_size, stats.last_ack_at - stats.first_ack_at, stats.last_ack_at - started)


async def main(args: argparse.Namespace) -> list[Result]:
    calls = max(1, args.events // 5)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        async with NatsServer(Path(tmp) / "nats") as server:
            sqlite_url = f"sqlite+aiosqlite:///{tmp}/faas.db"
            results.append(await run_one(server, "sqlite", sqlite_url, calls, args.batch_size))
            if args.postgres:
                async with postgres_database(args.postgres) as url:
                    results.append(await run_one(server, "postgresql", url, calls, args.batch_size))
    return results


def print_table(results: list[Result]) -> None:
    print(
        f"{results[0].events} events per backend (per call: accepted, started, 2 log chunks of 5 lines,"
        f" finished; {IN_FLIGHT} calls in flight), {os.cpu_count()} CPUs"
    )
    print(f"{'backend':<11} {'events':>8} {'batch':>6} {'events/s':>10} {'first->last ack s':>18} {'total s':>8}")
    for r in results:
        print(f"{r.backend:<11} {r.events:>8} {r.batch_size:>6} {r.rate:>10,.0f} {r.seconds:>18.2f} {r.total_s:>8.2f}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.store_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000, help="events to publish (five per call)")
    p.add_argument("--batch-size", type=int, default=StoreSettings.model_fields["batch_size"].default)
    p.add_argument(
        "--postgres",
        default=os.environ.get("FAAS_BENCH_POSTGRES_URL"),
        help="SQLAlchemy URL of a PostgreSQL server (role with CREATEDB); default $FAAS_BENCH_POSTGRES_URL",
    )
    p.add_argument("--log-level", default="ERROR", help="of the store and NATS client (default ERROR)")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    setup_logging(arguments.log_level)
    print_table(asyncio.run(main(arguments)))
