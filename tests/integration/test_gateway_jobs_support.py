"""Helpers for the jobs, logs and callbacks tests of the gateway (no tests here): a fake store
answering the job and log subjects, event publishers playing the node agent, and a minimal
Server-Sent Events reader."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from nats import micro
from nats.aio.client import Client
from nats.micro.request import Request

from schemas import (
    CallStatus,
    Finished,
    GetJob,
    GetLogs,
    InvalidMessage,
    JobFinished,
    JobPage,
    JobQuery,
    JobRecord,
    JobResult,
    JobStatus,
    Layout,
    LogEntry,
    LogPage,
    Logs,
    decode,
    encode,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def job_record(job_id: str, status: JobStatus = JobStatus.QUEUED, number: int = 1, **extra: Any) -> JobRecord:
    values: dict[str, Any] = {
        "id": job_id,
        "number": number,
        "name": "train",
        "priority": 5,
        "image": "faas-python",
        "command": ["python3", "-c", "print(1)"],
        "status": status,
        "created_at": T0,
    }
    values.update(extra)
    return JobRecord(**values)


@dataclass
class StoreState:
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    logs: dict[str, LogPage] = field(default_factory=dict)
    job_queries: list[JobQuery] = field(default_factory=list)


@asynccontextmanager
async def fake_job_store(nc: Client, layout: Layout, state: StoreState | None = None) -> AsyncIterator[StoreState]:
    """Answers the job and log subjects of the store from ``state`` (tests may change it)."""
    st = state or StoreState()

    async def get_job(req: Request) -> None:
        try:
            key = decode(GetJob, req.data)
        except InvalidMessage as err:
            await req.respond_error("400", str(err))
            return
        if key.id in st.jobs:
            await req.respond(encode(st.jobs[key.id]))
        else:
            await req.respond_error("404", f"no job {key.id}")

    async def list_jobs(req: Request) -> None:
        query = decode(JobQuery, req.data)
        st.job_queries.append(query)
        items = [j for j in st.jobs.values() if query.status in (None, j.status)][: query.limit]
        await req.respond(encode(JobPage(items=items, next_cursor="next" if query.cursor is None else None)))

    async def get_logs(req: Request) -> None:
        key = decode(GetLogs, req.data)
        if key.id in st.logs:
            await req.respond(encode(st.logs[key.id]))
        else:
            await req.respond_error("404", f"no logs of {key.id}")

    svc = await micro.add_service(nc, name="fake-job-store", version="0.0.1")
    await svc.add_endpoint(name="get-job", subject=layout.store_get_job, handler=get_job)
    await svc.add_endpoint(name="list-jobs", subject=layout.store_list_jobs, handler=list_jobs)
    await svc.add_endpoint(name="logs", subject=layout.store_get_logs, handler=get_logs)
    await nc.flush()
    try:
        yield st
    finally:
        await svc.stop()


async def publish_logs(
    nc: Client, layout: Layout, id: str, seq: int, texts: list[str], attempt: int = 1, number: int = 1
) -> None:
    """A chunk as a node agent's LogPublisher publishes it."""
    lines = [LogEntry(at=T0, stream="stderr" if t.startswith("E:") else "stdout", text=t) for t in texts]
    event = Logs(call_id=id, number=number, attempt=attempt, seq=seq, lines=lines)
    await nc.jetstream().publish(layout.event(id, "log"), encode(event), stream=layout.events_stream)


async def publish_job_finished(nc: Client, layout: Layout, id: str, status: JobStatus = JobStatus.FINISHED) -> None:
    event = JobFinished(job_id=id, status=status, node="node-1", result=JobResult(exit_code=0))
    await nc.jetstream().publish(layout.event(id, event.kind), encode(event), stream=layout.events_stream)


async def publish_call_finished(
    nc: Client, layout: Layout, id: str, status: CallStatus = CallStatus.DONE, **extra: Any
) -> None:
    event = Finished(call_id=id, number=extra.pop("number", 1), status=status, node="node-1", **extra)
    await nc.jetstream().publish(layout.event(id, event.kind), encode(event), stream=layout.events_stream)


@dataclass
class SseEvent:
    event: str
    data: Any


class SseReader:
    """Reads an open ``text/event-stream`` response: events, and the comments seen on the way."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout: float = 10.0) -> SseEvent | None:
        """The next event; None when the stream has ended."""
        name, data = "message", []
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    return SseEvent(name, json.loads("\n".join(data)))
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())

    async def until_end(self, timeout: float = 10.0) -> tuple[list[tuple[str, str]], SseEvent | None]:
        """The log lines (stream, text) up to the ``end`` event, and that event."""
        lines: list[tuple[str, str]] = []
        while (event := await self.next(timeout)) is not None:
            if event.event == "end":
                return lines, event
            lines.append((event.data["stream"], event.data["text"]))
        return lines, None
