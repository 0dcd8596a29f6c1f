"""Container jobs: queue one (by priority), cancel one.

A job is published on ``<prefix>.invoke.job.<priority>``; its stream sequence is the job
number. Its secrets (``secret_env`` values, ``registry_auth``) are sealed with the platform's
secrets key into the message (``JobMessage.sealed``), for the agent that runs it; the
``job_accepted`` event and the answer carry the secret variables' names only, so no secret
reaches a stream in clear, the store, a log or an answer. A cancel goes through
gateway/cancels.py, as a call's does: a key in the cancels bucket, which the node agents
check before a job starts and watch while it runs.
"""

import logging
import re
import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext

from common.events import Event, last_event
from common.logs import fields
from common.sealing import SecretsKey
from gateway.cancels import Cancels, conflict
from gateway.errors import GatewayError, bad_request, check_id, nats_unavailable
from gateway.queueing import enqueue
from gateway.routing import NodeRouter
from gateway.store_client import StoreClient
from schemas import (
    GetJob,
    InvalidMessage,
    JobAccepted,
    JobFinished,
    JobMessage,
    JobRecord,
    JobResult,
    JobSpec,
    JobStarted,
    JobStatus,
    Layout,
    dedup,
    encode,
)

log = logging.getLogger(__name__)

# What submit() names a job: "j" + 32 hex digits (call ids the gateway makes have no "j").
JOB_ID = re.compile(r"^j[0-9a-f]{32}$")


class Jobs:
    def __init__(
        self,
        js: JetStreamContext,
        layout: Layout,
        store: StoreClient,
        cancels: Cancels,
        secrets_key: SecretsKey | None = None,
        router: NodeRouter | None = None,
        queue_full_retry_after_s: int = 5,
    ) -> None:
        self._js = js
        self._retry_after_s = queue_full_retry_after_s
        self._layout = layout
        self._store = store
        self._cancels = cancels
        self._key = secrets_key
        # the nodes' heartbeats: a job no live node would run is refused at once
        self._router = router

    async def submit(self, spec: JobSpec) -> JobRecord:
        """Queue a job; returns its record as the store will first show it (QUEUED).

        400 if the job has secrets and this gateway has no secrets key to seal them with, or
        if it asks for more memory, CPU or time than every live node allows."""
        if self._router is not None and (refusal := self._router.job_refusal(spec)):
            raise bad_request(refusal)
        job_id = "j" + uuid.uuid4().hex
        now = datetime.now(UTC)
        c = spec.container
        names = sorted(c.secret_env)
        sealed = None
        if c.has_secrets:
            if self._key is None:
                raise GatewayError(
                    400,
                    "secrets_unavailable",
                    "this gateway has no secrets key (setting secrets_key_file), so it cannot accept "
                    "a job with secret_env or registry_auth",
                )
            sealed = self._key.seal(encode(c.secrets(job_id)))
        public = spec.model_copy(update={"container": c.without_secrets()})
        message = JobMessage(id=job_id, spec=public, created_at=now, sealed=sealed)
        number = await self._queue(self._layout.invoke_job(spec.priority), encode(message), dedup.job(job_id))
        await self._announce(JobAccepted(job_id=job_id, number=number, spec=public, secret_env_names=names, at=now))
        log.info(
            "job.accepted",
            extra=fields(job=job_id, number=number, priority=spec.priority, name=spec.name, sealed=sealed is not None),
        )
        return JobRecord(
            id=job_id,
            number=number,
            name=spec.name,
            description=spec.description,
            priority=spec.priority,
            image=c.image,
            command=c.command,
            env=c.env,
            secret_env_names=names,
            metadata=spec.metadata,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )

    async def cancel(self, job_id: str) -> JobStatus:
        """Ask for a job to be cancelled; returns the status it has now (CANCELLED at once if it
        was still queued, else RUNNING until its node has stopped it). 404 unknown, 409 ended."""
        check_id("job", job_id)
        status = await self._status(job_id)
        await self._cancels.request("job", job_id, status)
        if status != JobStatus.QUEUED:
            assert status is not None
            return status
        # Queued: the record shows it at once. A node taking the job meanwhile sees the key
        # (checked before a job starts, watched while it runs) and ends it CANCELLED too.
        now = datetime.now(UTC)
        event = JobFinished(
            job_id=job_id,
            at=now,
            status=JobStatus.CANCELLED,
            result=JobResult(finished_at=now, error="cancelled before it started"),
        )
        subject = self._layout.event(job_id, event.kind)
        if await self._cancels.record_cancelled(subject, encode(event), dedup.job_cancelled(job_id)):
            return JobStatus.CANCELLED
        # It ended first (or another gateway recorded the cancel): what its final event says.
        try:
            first = await self._last_event(job_id, JobFinished)
        except InvalidMessage:
            first = None
        if first is not None and first.status == JobStatus.CANCELLED:
            return JobStatus.CANCELLED
        raise conflict("job", job_id, first.status if first is not None else JobStatus.ERROR)

    async def _status(self, job_id: str) -> JobStatus | None:
        """The store's status; if the store does not know the job (yet: it lags the events
        stream) or is down, the job's latest events say it."""
        try:
            return (await self._store.get_job(GetJob(id=job_id))).status
        except GatewayError as err:
            if err.status != 404 and err.status < 500:
                raise
        try:
            finished = await self._last_event(job_id, JobFinished)
        except InvalidMessage:
            return JobStatus.ERROR  # a final event nobody can read: over all the same
        if finished is not None:
            return finished.status
        if await self._seen(job_id, JobStarted):
            return JobStatus.RUNNING
        if await self._seen(job_id, JobAccepted):
            return JobStatus.QUEUED
        return None

    async def _last_event(self, job_id: str, model: type[Event]) -> Event | None:
        with nats_unavailable("reading the job's events"):
            return await last_event(self._js, self._layout, job_id, model)

    async def _seen(self, job_id: str, model: type[Event]) -> bool:
        try:
            return await self._last_event(job_id, model) is not None
        except InvalidMessage:
            return True  # there, if unreadable

    async def _queue(self, subject: str, data: bytes, msg_id: str) -> int:
        return await enqueue(self._js, self._layout, subject, data, msg_id, "job", retry_after_s=self._retry_after_s)

    async def _announce(self, event: JobAccepted) -> None:
        """The job is queued already: a failure here is logged, not raised."""
        try:
            await self._js.publish(
                self._layout.event(event.job_id, event.kind),
                encode(event),
                stream=self._layout.events_stream,
                headers=dedup.header(dedup.job_accepted(event.job_id)),
            )
        except Exception:
            log.exception("job.accepted.publish_failed", extra=fields(job=event.job_id, number=event.number))
