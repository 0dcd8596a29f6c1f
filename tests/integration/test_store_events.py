"""Logs, callbacks and jobs through a real nats-server: events in on the one events stream,
answers out on ``store.logs.get``, ``store.calls.get``, ``store.jobs.get``/``list``.
SQLite and PostgreSQL (when configured). Burst mode drives ingestion."""

from datetime import timedelta

import pytest
from nats.aio.client import Client

from schemas import (
    Accepted,
    Callback,
    CallbackOutcome,
    CallStatus,
    Finished,
    GetJob,
    GetLogs,
    JobAccepted,
    JobContainer,
    JobFinished,
    JobPage,
    JobQuery,
    JobRecord,
    JobResult,
    JobSpec,
    JobStarted,
    JobStatus,
    Layout,
    LogEntry,
    LogPage,
    Logs,
    RegistryAuth,
    Started,
    encode,
)
from store import StoreSettings
from store.events import StoreEvent
from tests.integration.store_fixtures import settings, stores  # noqa: F401 (fixtures)
from tests.integration.test_store_support import (
    T0,
    StoreFactory,
    ask,
    ask_for,
    consumer_settled,
    eventually,
    get_call,
    publish_any,
    service_error,
)

HOOK = "https://example.test/hook"


def log_chunk(key: str, seq: int, texts: list[str], attempt: int = 1, truncated: bool = False) -> Logs:
    at = T0 + timedelta(seconds=seq)
    lines = [LogEntry(at=at, stream="stdout", text=t) for t in texts]
    return Logs(call_id=key, number=1, attempt=attempt, seq=seq, lines=lines, truncated=truncated, at=at)


def job_story(job_id: str, number: int, minutes: int, end: JobStatus | None = JobStatus.FINISHED) -> list[StoreEvent]:
    at = T0 + timedelta(minutes=minutes)
    container = JobContainer(
        image="busybox", command=["echo", job_id], registry_auth=RegistryAuth(username="u", password="pw")
    )
    events: list[StoreEvent] = [
        JobAccepted(job_id=job_id, number=number, at=at, spec=JobSpec(name=job_id, priority=3, container=container)),
        JobStarted(job_id=job_id, at=at + timedelta(seconds=1), node="node-1", container=f"ctr-{job_id}"),
    ]
    if end is not None:
        result = JobResult(exit_code=0 if end is JobStatus.FINISHED else 1, duration_ms=1000.0)
        events.append(
            JobFinished(job_id=job_id, at=at + timedelta(seconds=2), status=end, node="node-1", result=result)
        )
    return events


async def test_logs_of_calls_and_jobs(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    events: list[StoreEvent] = [
        Accepted(call_id="call-1", number=1, function="dice"),
        log_chunk("call-1", 1, ["second"]),
        log_chunk("call-1", 0, ["first", "line"]),
        log_chunk("call-1", 0, ["first", "line"]),  # redelivered
        log_chunk("call-1", 2, ["cut here"], truncated=True),
        *job_story("job-1", 2, 1),
        log_chunk("job-1", 0, ["job says hi"]),
        Accepted(call_id="silent", number=3),
    ]
    await publish_any(nc, layout, events)
    store = stores(settings, background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == len(events)

    page = await ask_for(nc, layout.store_get_logs, GetLogs(id="call-1"), LogPage)
    assert [line.text for line in page.lines] == ["first", "line", "second", "cut here"] and page.truncated
    job = await ask_for(nc, layout.store_get_logs, GetLogs(id="job-1"), LogPage)
    assert [line.text for line in job.lines] == ["job says hi"] and not job.truncated
    assert await ask_for(nc, layout.store_get_logs, GetLogs(id="silent"), LogPage) == LogPage(id="silent", lines=[])
    assert service_error(await ask(nc, layout.store_get_logs, encode(GetLogs(id="nobody")))) == (
        "404",
        "no call or job nobody",
    )
    assert await eventually(lambda: consumer_settled(nc, layout))


async def test_a_log_bigger_than_a_nats_message_comes_back_cut(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    # 2.5 MiB of output in chunks of 512 KiB (each chunk fits a message, the whole does not).
    chunks = [log_chunk("big", seq, [f"{seq}:" + "o" * 1023] * 512) for seq in range(5)]
    await publish_any(nc, layout, [Accepted(call_id="big", number=1), *chunks])
    store = stores(settings, background_ingest=False)
    await store.start()
    await store.run_until_idle()
    msg = await ask(nc, layout.store_get_logs, encode(GetLogs(id="big")))
    assert service_error(msg) is None
    assert nc.max_payload - 2048 < len(msg.data) <= nc.max_payload
    page = await ask_for(nc, layout.store_get_logs, GetLogs(id="big"), LogPage)
    assert page.truncated and page.lines[0].text.startswith("0:") and page.lines[-1].text.startswith("1:")


async def test_callback_url_and_outcome_on_the_call_record(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory
) -> None:
    failed = CallbackOutcome(url=HOOK, delivered=False, attempts=1, error="refused", at=T0 + timedelta(seconds=5))
    ok = CallbackOutcome(url=HOOK, delivered=True, attempts=2, status_code=204, at=T0 + timedelta(seconds=9))
    await publish_any(
        nc,
        layout,
        [
            Callback(call_id="cb", number=1, outcome=ok),  # the later outcome arrives first
            Accepted(call_id="cb", number=1, at=T0, callback_url=HOOK),
            Started(call_id="cb", number=1, at=T0 + timedelta(seconds=1), node="n1"),
            Finished(call_id="cb", number=1, at=T0 + timedelta(seconds=2), status=CallStatus.DONE, callback_url=HOOK),
            Callback(call_id="cb", number=1, outcome=failed),
        ],
    )
    store = stores(settings, background_ingest=False)
    await store.start()
    await store.run_until_idle()
    record = await get_call(nc, layout, id="cb")
    assert record.status is CallStatus.DONE and record.finished_at == T0 + timedelta(seconds=2)
    assert record.callback_url == HOOK and record.callback == ok


async def test_jobs_get_and_list(nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory) -> None:
    events: list[StoreEvent] = []
    for n in range(1, 8):
        events += job_story(f"job-{n}", n, n, end=JobStatus.ERROR if n % 3 == 0 else JobStatus.FINISHED)
    events += job_story("job-running", 8, 8, end=None)
    await publish_any(nc, layout, list(reversed(events)))  # newest events first: order does not matter
    store = stores(settings.model_copy(update={"batch_size": 5}), background_ingest=False)
    await store.start()
    assert await store.run_until_idle() == len(events)

    job = await ask_for(nc, layout.store_get_job, GetJob(id="job-3"), JobRecord)
    assert job.status is JobStatus.ERROR and job.result.exit_code == 1
    assert (job.name, job.priority, job.image, job.command, job.number) == ("job-3", 3, "busybox", ["echo", "job-3"], 3)
    assert job.created_at == T0 + timedelta(minutes=3) and job.updated_at == T0 + timedelta(minutes=3, seconds=2)
    assert (job.node, job.container) == ("node-1", "ctr-job-3")

    ids: list[str] = []
    query = JobQuery(limit=3)
    while True:
        page = await ask_for(nc, layout.store_list_jobs, query, JobPage)
        ids += [j.id for j in page.items]
        if page.next_cursor is None:
            break
        query = JobQuery(limit=3, cursor=page.next_cursor)
    assert ids == ["job-running", *(f"job-{n}" for n in range(7, 0, -1))]
    errors = await ask_for(nc, layout.store_list_jobs, JobQuery(status=JobStatus.ERROR), JobPage)
    assert [j.id for j in errors.items] == ["job-6", "job-3"]
    running = await ask_for(nc, layout.store_list_jobs, JobQuery(status=JobStatus.RUNNING), JobPage)
    assert [j.id for j in running.items] == ["job-running"]


@pytest.mark.parametrize(
    ("endpoint", "payload", "says"),
    [
        ("get_job", b'{"id": "missing"}', "404 job missing not found"),
        ("get_job", b"{}", "400 id: Field required"),
        ("list_jobs", b'{"status": "SLEEPING"}', "400 status"),
        ("list_jobs", b'{"cursor": "nope"}', "400 invalid cursor"),
        ("get_logs", b"not json", "400 invalid JSON"),
    ],
)
async def test_bad_job_and_log_requests(
    nc: Client, layout: Layout, settings: StoreSettings, stores: StoreFactory, endpoint: str, payload: bytes, says: str
) -> None:
    await stores(settings, background_ingest=False).start()
    subject = {"get_job": layout.store_get_job, "list_jobs": layout.store_list_jobs, "get_logs": layout.store_get_logs}
    error = service_error(await ask(nc, subject[endpoint], payload))
    assert error is not None and f"{error[0]} {error[1]}".startswith(says)
