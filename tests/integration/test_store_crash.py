"""A store process SIGKILLed while events flow: a new one catches up, and every call published
ends with its full record. ``python -m store`` runs as a subprocess with ``FAAS_STORE_*``
settings, against the session nats-server, on SQLite and PostgreSQL (when configured)."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client

from common.natsserver import NatsServer
from schemas import (
    Accepted,
    CallQuery,
    CallRecord,
    CallStatus,
    ErrorInfo,
    Finished,
    GetLogs,
    Layout,
    LogEntry,
    LogPage,
    Logs,
    Started,
)
from store.events import StoreEvent
from tests.integration.test_store_support import (
    T0,
    ask_for,
    consumer_settled,
    eventually,
    find_call,
    list_all,
    publish_any,
)
from tests.natsusers import service_env
from tests.unit.test_store_backends import BACKENDS, fresh_database

ROOT = Path(__file__).resolve().parents[2]
# Calls overlap: call i is accepted while call i - LAG starts and call i - 2 * LAG finishes.
LAG = 5


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


def events_of(i: int, step: int) -> list[StoreEvent]:
    """What call ``i`` publishes at ``step`` of its life (0 accepted, 1 started and a log
    chunk, 2 finished); every seventh call fails."""
    what = dict(call_id=f"k{i}", number=i, function="dice", version=1, runtime="python3")
    at = T0 + timedelta(seconds=i)
    if step == 0:
        return [Accepted(**what, at=at, params={"n": i})]
    if step == 1:
        line = LogEntry(at=at, stream="stdout", text=f"call {i} says hi")
        return [
            Started(**what, at=at + timedelta(milliseconds=1), node="node-1", container=f"ctr-{i}"),
            Logs(**what, at=at + timedelta(milliseconds=2), seq=0, lines=[line]),
        ]
    if i % 7 == 0:
        error = ErrorInfo(type="Boom", message=f"call {i} failed")
        return [Finished(**what, at=at + timedelta(seconds=1), status=CallStatus.ERROR, error=error, exit_code=1)]
    return [Finished(**what, at=at + timedelta(seconds=1), status=CallStatus.DONE, result=[i], exit_code=0)]


class Publisher:
    """Publishes calls continuously, ``LAG`` of them in flight, until asked to wind down;
    then it finishes the calls in flight and stops."""

    def __init__(self, nc: Client, layout: Layout) -> None:
        self.nc, self.layout = nc, layout
        self.accepted = 0  # calls started so far (1..accepted)
        self.winding_down = asyncio.Event()

    async def run(self) -> None:
        step = 0
        while True:
            step += 1
            events: list[StoreEvent] = []
            if not self.winding_down.is_set():
                self.accepted = step
                events += events_of(step, 0)
            for k in (1, 2):
                i = step - k * LAG
                if 1 <= i <= self.accepted:
                    events += events_of(i, k)
            if not events:
                return
            await publish_any(self.nc, self.layout, events)


@asynccontextmanager
async def store_process(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "store", env=env, cwd=ROOT, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_store_killed_while_events_flow_catches_up(
    nats_server: NatsServer, nc: Client, layout: Layout, tmp_path: Path, database_url: str
) -> None:
    env = {
        **os.environ,
        **service_env(nats_server, "FAAS_STORE_", "store"),
        "FAAS_STORE_PREFIX": layout.prefix,
        "FAAS_STORE_DATABASE_URL": database_url,
        "FAAS_STORE_BATCH_SIZE": "16",
        "FAAS_STORE_FETCH_TIMEOUT_S": "0.25",
        # What the killed store took but never acked comes back quickly.
        "FAAS_STORE_ACK_WAIT_S": "1.5",
        "FAAS_STORE_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "store.log"
    publisher = Publisher(nc, layout)
    flow = asyncio.create_task(publisher.run(), name="publisher")
    try:
        async with store_process(env, log) as first:
            # Mid-flow: the store has recorded some calls and more keep coming.
            await eventually(lambda: find_call(nc, layout, id="k20"), timeout=30)
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        killed_at = publisher.accepted

        # Events go on piling up while no store runs.
        await eventually(lambda: _true_if(publisher.accepted >= killed_at + 30), timeout=30)
        async with store_process(env, log) as second:
            seen = publisher.accepted
            await eventually(lambda: find_call(nc, layout, id=f"k{seen}"), timeout=30)
            publisher.winding_down.set()
            await asyncio.wait_for(flow, timeout=30)
            total = publisher.accepted

            async def all_done() -> list[CallRecord] | None:
                if not await consumer_settled(nc, layout):
                    return None
                records = await list_all(nc, layout, CallQuery(limit=500))
                return records if len(records) == total and all(r.status.terminal for r in records) else None

            records = await eventually(all_done, timeout=60)
            for record in records:
                _check(record)
            page = await ask_for(nc, layout.store_get_logs, GetLogs(id=f"k{killed_at}"), LogPage)
            assert [line.text for line in page.lines] == [f"call {killed_at} says hi"]

            # A graceful stop of the second one, for good measure.
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), timeout=15) == 0
    except BaseException:
        print(log.read_text(errors="replace")[-5000:])
        raise
    finally:
        flow.cancel()
    assert total > killed_at + 30


def _check(record: CallRecord) -> None:
    i = record.number
    assert record.id == f"k{i}"
    assert (record.function, record.version, record.runtime, record.params) == ("dice", 1, "python3", {"n": i})
    assert (record.node, record.container, record.attempts) == ("node-1", f"ctr-{i}", 1)
    assert record.created_at == T0 + timedelta(seconds=i)
    assert record.started_at == T0 + timedelta(seconds=i, milliseconds=1)
    assert record.finished_at == T0 + timedelta(seconds=i + 1)
    if i % 7 == 0:
        assert record.status is CallStatus.ERROR and record.error is not None and record.exit_code == 1
    else:
        assert record.status is CallStatus.DONE and record.result == [i] and record.exit_code == 0


async def _true_if(condition: bool) -> bool | None:
    return True if condition else None


def _nice_of_threads(pid: int) -> list[int]:
    """The niceness of each thread of ``pid`` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        raw = (task / "stat").read_text()
        out.append(int(raw[raw.rindex(")") + 2 :].split()[16]))
    return out


async def test_the_store_process_runs_at_the_configured_niceness_with_all_its_threads(
    nats_server: NatsServer, nc: Client, layout: Layout, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **service_env(nats_server, "FAAS_STORE_", "store"),
        "FAAS_STORE_PREFIX": layout.prefix,
        "FAAS_STORE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'faas.db'}",
        "FAAS_STORE_NICE": "7",
    }
    async with store_process(env, tmp_path / "store.log") as proc:
        await publish_any(nc, layout, [e for step in (0, 1, 2) for e in events_of(1, step)])
        await eventually(lambda: find_call(nc, layout, id="k1"), timeout=30)
        # the database's worker thread exists now, and has the process's niceness too
        nice = _nice_of_threads(proc.pid)
        assert len(nice) > 1 and set(nice) == {7}
