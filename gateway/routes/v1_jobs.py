"""``/v1/jobs``: queue a container job, list and show jobs (the store's records), cancel one."""

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import check_id
from gateway.web import json_response, model_json, parse_model, parse_query, read_json
from schemas import GetJob, JobPage, JobQuery, JobRecord, JobSpec
from schemas.http import CancelRequested, IdPath


@documented("Queue a container job", body=JobSpec, answers={201: JobRecord}, errors=(503,))
async def create(request: web.Request) -> web.Response:
    """``POST /v1/jobs`` (a JobSpec) → 201 with the job's record: id ``j<hex>``, number, QUEUED."""
    d = deps(request)
    body = await read_json(request, d.settings.max_job_bytes)
    record = await d.jobs.submit(parse_model(JobSpec, body, "job"))
    return json_response(model_json(record), status=201, headers={"Location": f"/v1/jobs/{record.id}"})


@documented("A page of jobs, newest first", query=JobQuery, answers={200: JobPage}, errors=(400, 502, 503))
async def list_jobs(request: web.Request) -> web.Response:
    """Query: status, limit (1-1000), cursor → one page, newest first."""
    page = await deps(request).store.list_jobs(parse_query(request, JobQuery))
    return json_response({"items": [model_json(j) for j in page.items], "next_cursor": page.next_cursor})


@documented("One job", path=IdPath, answers={200: JobRecord}, errors=(404, 502, 503))
async def get_job(request: web.Request) -> web.Response:
    job_id = check_id("job", request.match_info["id"])
    return json_response(model_json(await deps(request).store.get_job(GetJob(id=job_id))))


@documented("Cancel a job", path=IdPath, answers={202: CancelRequested}, errors=(404, 409, 502, 503))
async def cancel(request: web.Request) -> web.Response:
    """``POST /v1/jobs/{id}/cancel`` → 202 ``{"id", "status"}``: CANCELLED at once if it was
    queued, else RUNNING until its node has stopped it. 404 unknown, 409 already ended."""
    job_id = request.match_info["id"]
    status = await deps(request).jobs.cancel(job_id)
    return json_response(
        {"id": job_id, "status": status.value, "cancel_requested": True},
        status=202,
        headers={"Location": f"/v1/jobs/{job_id}"},
    )
