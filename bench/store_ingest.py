"""The store's ingest: how many events a second it takes from the events stream into SQLite
(and PostgreSQL, given a URL), and how much CPU it spends per call.

    python -m bench.store_ingest                       # SQLite, 50,000 events
    python -m bench.store_ingest --events 100000 --postgres postgresql+asyncpg://u:p@host/db
    python -m bench.store_ingest --rate 300 --calls 3000            # trickle: 300 calls/s
    python -m bench.store_ingest --rate 300 --per-call finished     # only a Finished per call

Burst (the default): a private nats-server (port 0, temporary directory) gets N events first:
per call accepted, started, two log chunks of five lines, finished, interleaved as if 200
calls were in flight (so a batch mixes new and known records, as in production). Then a
Store (the real service, background ingest) drains them; the rate is measured from its first
ack to its last.

Trickle (``--rate``): the Store runs first, idle; a separate process then publishes each
call's events at a fixed rate of calls a second (accepted, started 1 ms later, finished 3 ms
later; or only a Finished carrying created_at and started_at), as a platform under moderate
load would. The store then sees small batches, which is where a fixed cost per transaction
shows.

Both report the store's CPU: this process's user + system time (``getrusage``: every thread,
the aiosqlite worker included; the publisher of the trickle is another process) from just
before the Store starts to its last ack, divided by the calls. Starting (connect, migrate)
is inside that window: a few tens of ms. With PostgreSQL the server's CPU for the run's
database (its backend processes, from /proc, where readable) is reported besides. For
PostgreSQL a database is created for the run and dropped after (the role needs CREATEDB).
"""

import argparse
import asyncio
import multiprocessing
import os
import resource
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

from bench.cpu import cpu_seconds
from common.jetstream import connect, ensure_layout
from common.logs import setup_logging
from common.natsserver import NatsServer
from schemas import Accepted, CallEvent, CallStatus, Finished, Layout, LogEntry, Logs, Started, encode
from store import Store, StoreSettings

IN_FLIGHT = 200
T0 = datetime(2025, 3, 1, tzinfo=UTC)
# Trickle: when a call's events go out after its start (accepted, started, finished).
TRICKLE_OFFSETS_S = (0.0, 0.001, 0.003)


@dataclass
class Result:
    mode: str  # "burst" or "trickle N/s"
    backend: str
    calls: int
    events: int
    batch_size: int
    seconds: float  # first ack to last ack
    total_s: float  # store start to last ack (connect, migrate, consume)
    cpu_s: float  # the store process, store start to last ack
    db_cpu_s: float | None = None  # PostgreSQL backends of the run's database
    batches: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_s * 1000 / self.calls

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_s * 1e6 / self.events


def process_cpu_s() -> float:
    """User + system CPU of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def trickle_events(i: int, per_call: str) -> list[CallEvent]:
    """A warm call's record events: accepted, started, finished, or a Finished alone that
    carries created_at and started_at (what an agent sends for a short call)."""
    accepted, started, _, _, finished = call_events(i)
    if per_call == "full":
        return [accepted, started, finished]
    assert isinstance(finished, Finished)
    only = finished.model_copy(update={"params": accepted.params, "created_at": accepted.at, "started_at": started.at})
    return [only]


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
    await wait_stored(nc, layout, n)
    return n


async def wait_stored(nc: Client, layout: Layout, n: int) -> None:
    js = nc.jetstream()
    deadline = time.monotonic() + 60
    while (await js.stream_info(layout.events_stream)).state.messages < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the events stream did not get every event")
        await asyncio.sleep(0.05)


async def publish_at_rate(url: str, prefix: str, calls: int, rate: float, per_call: str) -> None:
    """Publish ``calls`` calls' events, call i starting at i / rate seconds."""
    layout = Layout(prefix=prefix)
    schedule: list[tuple[float, int, CallEvent]] = []
    for i in range(1, calls + 1):
        for k, event in enumerate(trickle_events(i, per_call)):
            schedule.append(((i - 1) / rate + TRICKLE_OFFSETS_S[k], len(schedule), event))
    schedule.sort(key=lambda item: item[:2])
    nc = await connect(url, "bench-trickle")
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for due, _, event in schedule:
            if (delay := t0 + due - loop.time()) > 0:
                await asyncio.sleep(delay)
            await nc.publish(layout.event(event.call_id, event.kind), encode(event))
        await nc.flush()
    finally:
        await nc.drain()


def _publisher_process(url: str, prefix: str, calls: int, rate: float, per_call: str) -> None:
    asyncio.run(publish_at_rate(url, prefix, calls, rate, per_call))


class PostgresBackends:
    """CPU of the PostgreSQL server processes serving one database (Linux /proc; the server
    must run on this machine and its processes be readable, else None)."""

    def __init__(self, database: str) -> None:
        self._marker = f" {database} ".encode()
        self._base: dict[int, float] = {}

    def _current(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # A backend names itself "postgres: <user> <database> <client> <state>".
            if cmdline.startswith(b"postgres: ") and self._marker in cmdline:
                if (cpu := cpu_seconds(int(entry.name))) is not None:
                    out[int(entry.name)] = cpu
        return out

    def start(self) -> None:
        self._base = self._current()

    def seconds(self) -> float | None:
        now = self._current()
        if not now:
            return None
        # A backend that connected during the run counts from zero.
        return sum(cpu - self._base.get(pid, 0.0) for pid, cpu in now.items())


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


async def _wait_acked(
    store: Store, events: int, backend: str, publisher: multiprocessing.process.BaseProcess | None = None
) -> None:
    deadline = time.monotonic() + 600
    while store.ingest_stats.acked < events:
        if store.tasks.failed.is_set() or time.monotonic() > deadline:
            raise RuntimeError(f"{backend}: ingested {store.ingest_stats.acked} of {events}")
        if publisher is not None and publisher.exitcode not in (None, 0):
            raise RuntimeError(f"the publisher failed ({publisher.exitcode})")
        # Rarely: this loop runs in the measured process.
        await asyncio.sleep(0.05)


def _db_backends(backend: str, url: str) -> PostgresBackends | None:
    return PostgresBackends(make_url(url).database or "") if backend == "postgresql" else None


def _store_for(
    server: NatsServer, layout: Layout, backend: str, url: str, batch_size: int, linger: float
) -> tuple[StoreSettings, PostgresBackends | None]:
    """The store's settings for a run, and the database server's CPU meter, started."""
    settings = StoreSettings(
        nats_url=server.url,
        prefix=layout.prefix,
        database_url=url,
        batch_size=batch_size,
        linger_s=linger,
        metrics_port=0,
    )
    pg = _db_backends(backend, url)
    if pg is not None:
        pg.start()
    return settings, pg


async def run_burst(server: NatsServer, backend: str, url: str, calls: int, batch_size: int, linger: float) -> Result:
    layout = Layout(prefix="bench" + secrets.token_hex(3))
    nc = await connect(server.url, "bench")
    try:
        await ensure_layout(nc.jetstream(), layout)
        events = await publish(nc, layout, calls)
    finally:
        await nc.drain()
    settings, pg = _store_for(server, layout, backend, url, batch_size, linger)
    cpu0, started = process_cpu_s(), time.monotonic()
    async with Store(settings) as store:
        await _wait_acked(store, events, backend)
        cpu_s = process_cpu_s() - cpu0
        db_cpu_s = pg.seconds() if pg is not None else None
        stats = store.ingest_stats
    assert stats.first_ack_at is not None and stats.last_ack_at is not None
    return Result(
        "burst", backend, calls, events, batch_size,
        stats.last_ack_at - stats.first_ack_at, stats.last_ack_at - started, cpu_s, db_cpu_s, stats.batches,
    )  # fmt: skip


async def run_trickle(
    server: NatsServer, backend: str, url: str, calls: int, batch_size: int, rate: float, per_call: str, linger: float
) -> Result:
    layout = Layout(prefix="bench" + secrets.token_hex(3))
    nc = await connect(server.url, "bench")
    try:
        await ensure_layout(nc.jetstream(), layout)
    finally:
        await nc.drain()
    events = calls * len(trickle_events(1, per_call))
    settings, pg = _store_for(server, layout, backend, url, batch_size, linger)
    cpu0, started = process_cpu_s(), time.monotonic()
    async with Store(settings) as store:
        # Another process publishes, so that this one's CPU is the store's alone.
        publisher = multiprocessing.get_context("spawn").Process(
            target=_publisher_process, args=(server.url, layout.prefix, calls, rate, per_call), daemon=True
        )
        publisher.start()
        try:
            await _wait_acked(store, events, backend, publisher)
        finally:
            publisher.join(30)
        cpu_s = process_cpu_s() - cpu0
        db_cpu_s = pg.seconds() if pg is not None else None
        stats = store.ingest_stats
    assert stats.first_ack_at is not None and stats.last_ack_at is not None
    return Result(
        f"trickle {rate:g}/s {per_call}", backend, calls, events, batch_size,
        stats.last_ack_at - stats.first_ack_at, stats.last_ack_at - started, cpu_s, db_cpu_s, stats.batches,
    )  # fmt: skip


async def main(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        async with NatsServer(Path(tmp) / "nats") as server:

            async def run(backend: str, url: str) -> Result:
                if args.rate:
                    return await run_trickle(
                        server, backend, url, args.calls, args.batch_size, args.rate, args.per_call, args.linger
                    )
                return await run_burst(server, backend, url, max(1, args.events // 5), args.batch_size, args.linger)

            if not args.no_sqlite:
                results.append(await run("sqlite", f"sqlite+aiosqlite:///{tmp}/faas.db"))
            if args.postgres:
                async with postgres_database(args.postgres) as url:
                    results.append(await run("postgresql", url))
    return results


def print_table(results: list[Result]) -> None:
    if results[0].mode == "burst":
        what = f"per call: accepted, started, 2 log chunks of 5 lines, finished; {IN_FLIGHT} calls in flight"
    else:
        what = "published at a fixed rate by another process"
    print(f"{results[0].calls} calls, {results[0].events} events per backend ({what}), {os.cpu_count()} CPUs")
    print(
        f"{'mode':<24} {'backend':<11} {'events':>7} {'batches':>7} {'events/s':>9} {'first->last s':>13}"
        f" {'store CPU s':>11} {'ms/call':>8} {'us/event':>8} {'db ms/call':>10}"
    )
    for r in results:
        db = f"{r.db_cpu_s * 1000 / r.calls:.3f}" if r.db_cpu_s is not None else "-"
        print(
            f"{r.mode:<24} {r.backend:<11} {r.events:>7} {r.batches:>7} {r.rate:>9,.0f} {r.seconds:>13.2f}"
            f" {r.cpu_s:>11.2f} {r.cpu_ms_per_call:>8.3f} {r.cpu_us_per_event:>8.0f} {db:>10}"
        )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.store_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=50_000, help="burst: events to publish (five per call)")
    p.add_argument("--rate", type=float, help="trickle: publish this many calls a second while the store runs")
    p.add_argument("--calls", type=int, default=3000, help="trickle: how many calls (default 3000)")
    p.add_argument(
        "--per-call",
        choices=("full", "finished"),
        default="full",
        help="trickle: accepted+started+finished (default), or only a Finished with created_at/started_at",
    )
    p.add_argument("--batch-size", type=int, default=StoreSettings.model_fields["batch_size"].default)
    p.add_argument(
        "--linger", type=float, default=StoreSettings.model_fields["linger_s"].default, help="the store's linger_s"
    )
    p.add_argument(
        "--postgres",
        default=os.environ.get("FAAS_BENCH_POSTGRES_URL"),
        help="SQLAlchemy URL of a PostgreSQL server (role with CREATEDB); default $FAAS_BENCH_POSTGRES_URL",
    )
    p.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    p.add_argument("--log-level", default="ERROR", help="of the store and NATS client (default ERROR)")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    setup_logging(arguments.log_level)
    print_table(asyncio.run(main(arguments)))
