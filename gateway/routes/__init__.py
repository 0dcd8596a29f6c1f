"""Route table: the original API (served exactly as it was) and the versioned ``/v1`` API."""

from aiohttp import web

from gateway.routes import health, legacy, v1_calls, v1_functions, v1_invoke, v1_jobs, v1_logs, v1_runtimes


def add_routes(app: web.Application) -> None:
    app.router.add_routes(
        [
            web.get("/healthz", health.healthz),
            # The original route set.
            web.post("/registerRuntime", legacy.register_runtime),
            web.post("/registerFunction/{runtime}/{funcName}", legacy.register_function),
            web.post("/invokeFunction", legacy.invoke_function),
            web.get("/runtimes", legacy.list_runtimes),
            web.get("/functions", legacy.list_functions),
            web.get("/calls", legacy.list_calls),
            web.get("/call/{callNum}", legacy.get_call),
            # /v1
            web.post("/v1/runtimes", v1_runtimes.create),
            web.get("/v1/runtimes", v1_runtimes.list_all),
            web.get("/v1/runtimes/{name}", v1_runtimes.get_one),
            web.delete("/v1/runtimes/{name}", v1_runtimes.delete),
            web.post("/v1/functions", v1_functions.create),
            web.get("/v1/functions", v1_functions.list_all),
            web.get("/v1/functions/{name}", v1_functions.get_one),
            web.delete("/v1/functions/{name}", v1_functions.delete),
            web.post("/v1/functions/{name}/invoke", v1_invoke.invoke),
            web.get("/v1/calls", v1_calls.list_calls),
            web.get("/v1/calls/{key}", v1_calls.get_call),
            web.get("/v1/calls/{id}/logs", v1_logs.call_logs),
            web.post("/v1/jobs", v1_jobs.create),
            web.get("/v1/jobs", v1_jobs.list_jobs),
            web.get("/v1/jobs/{id}", v1_jobs.get_job),
            web.post("/v1/jobs/{id}/cancel", v1_jobs.cancel),
            web.get("/v1/jobs/{id}/logs", v1_logs.job_logs),
        ]
    )
