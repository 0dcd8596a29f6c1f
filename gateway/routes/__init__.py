"""Route table: the original API (served exactly as it was), the versioned ``/v1`` API, and
what each route needs: the right a token must carry (``gateway.access``) and the body type
a state-changing route takes. A route is added here or not at all, so none is served
without a rule (the guard refuses a request whose route has none).

``PAGES`` are the dashboard's and the API viewer's static files (``gateway.ui``): public, and
not part of the API's OpenAPI description."""

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.access import RULES, Body, Right, Rule
from gateway.openapi import build_openapi
from gateway.routes import (
    health,
    legacy,
    metrics,
    openapi,
    ui,
    v1_calls,
    v1_functions,
    v1_invoke,
    v1_jobs,
    v1_logs,
    v1_nodes,
    v1_runtimes,
    v1_stats,
    v1_tokens,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = Rule(Right.PUBLIC)
READ = Rule(Right.READ)
CALLS = Rule(Right.CALLS)
INVOKE = Rule(Right.INVOKE)
INVOKE_JSON = Rule(Right.INVOKE, Body.JSON)
DEPLOY = Rule(Right.DEPLOY)
DEPLOY_JSON = Rule(Right.DEPLOY, Body.JSON)
DEPLOY_MULTIPART = Rule(Right.DEPLOY, Body.MULTIPART)
ADMIN = Rule(Right.ADMIN)
ADMIN_JSON = Rule(Right.ADMIN, Body.JSON)

ROUTES: tuple[tuple[str, str, Handler, Rule], ...] = (
    ("GET", "/healthz", health.healthz, PUBLIC),
    ("GET", "/openapi.json", openapi.openapi_json, PUBLIC),
    ("GET", "/metrics", metrics.metrics, READ),
    # The original route set.
    ("POST", "/registerRuntime", legacy.register_runtime, DEPLOY_JSON),
    ("POST", "/registerFunction/{runtime}/{funcName}", legacy.register_function, DEPLOY_MULTIPART),
    ("POST", "/invokeFunction", legacy.invoke_function, INVOKE_JSON),
    ("GET", "/runtimes", legacy.list_runtimes, READ),
    ("GET", "/functions", legacy.list_functions, READ),
    ("GET", "/calls", legacy.list_calls, CALLS),
    ("GET", "/call/{callNum}", legacy.get_call, CALLS),
    # /v1
    ("POST", "/v1/runtimes", v1_runtimes.create, DEPLOY_JSON),
    ("GET", "/v1/runtimes", v1_runtimes.list_all, READ),
    ("GET", "/v1/runtimes/{name}", v1_runtimes.get_one, READ),
    ("DELETE", "/v1/runtimes/{name}", v1_runtimes.delete, DEPLOY),
    ("POST", "/v1/functions", v1_functions.create, DEPLOY_MULTIPART),
    ("GET", "/v1/functions", v1_functions.list_all, READ),
    ("POST", "/v1/sequences", v1_functions.create_sequence, DEPLOY_JSON),
    ("GET", "/v1/functions/{name}", v1_functions.get_one, READ),
    ("DELETE", "/v1/functions/{name}", v1_functions.delete, DEPLOY),
    ("POST", "/v1/functions/{name}/invoke", v1_invoke.invoke, INVOKE_JSON),
    ("GET", "/v1/calls", v1_calls.list_calls, CALLS),
    ("GET", "/v1/calls/{key}", v1_calls.get_call, CALLS),
    ("GET", "/v1/calls/{id}/logs", v1_logs.call_logs, CALLS),
    ("POST", "/v1/calls/{id}/cancel", v1_calls.cancel, INVOKE),
    ("GET", "/v1/calls/{id}/tree", v1_calls.call_tree, CALLS),
    ("POST", "/v1/jobs", v1_jobs.create, DEPLOY_JSON),
    ("GET", "/v1/jobs", v1_jobs.list_jobs, READ),
    ("GET", "/v1/jobs/{id}", v1_jobs.get_job, READ),
    ("POST", "/v1/jobs/{id}/cancel", v1_jobs.cancel, DEPLOY),
    ("GET", "/v1/jobs/{id}/logs", v1_logs.job_logs, READ),
    ("GET", "/v1/nodes", v1_nodes.list_all, READ),
    ("GET", "/v1/stats", v1_stats.stats, CALLS),
    ("POST", "/v1/tokens", v1_tokens.create, ADMIN_JSON),
    ("GET", "/v1/tokens", v1_tokens.list_all, ADMIN),
    ("DELETE", "/v1/tokens/{name}", v1_tokens.revoke, ADMIN),
)

PAGES: tuple[tuple[str, str, Handler, Rule], ...] = (
    ("GET", "/ui", ui.ui_root, PUBLIC),
    ("GET", "/ui/", ui.ui_file, PUBLIC),
    ("GET", "/ui/{path:.+}", ui.ui_file, PUBLIC),
    ("GET", "/docs", ui.docs, PUBLIC),
)


def add_routes(app: web.Application) -> None:
    """The routes, their rules, and the OpenAPI description made from them (built here, once:
    a handler without ``@documented`` stops the gateway's start)."""
    app[openapi.OPENAPI] = json.dumps(build_openapi(ROUTES), separators=(",", ":")).encode()
    ui.setup(app)
    rules: dict[AbstractRoute, Rule] = {}
    for method, path, handler, rule in (*ROUTES, *PAGES):
        if method == "GET":
            route = app.router.add_get(path, handler)
            # add_get also answers HEAD, through a route of its own: the same rule.
            for sibling in route.resource or ():
                if sibling.handler is handler:
                    rules[sibling] = rule
        else:
            rules[app.router.add_route(method, path, handler)] = rule
    app[RULES] = rules
