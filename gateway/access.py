"""Who may do what: the rights a route needs (``gateway/routes`` gives each route one) and
the rights of each token role."""

from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from schemas import Role


class Right(StrEnum):
    PUBLIC = "public"  # no token: GET /healthz, GET /openapi.json, the static files of /ui/ and /docs
    READ = "read"  # GET runtimes, functions, jobs (and everything under CALLS)
    CALLS = "calls"  # GET calls and their logs
    INVOKE = "invoke"  # run a function
    DEPLOY = "deploy"  # create and delete runtimes and functions; submit and cancel jobs
    ADMIN = "admin"  # tokens


ROLE_RIGHTS: dict[Role, frozenset[Right]] = {
    Role.READ: frozenset({Right.READ, Right.CALLS}),
    Role.INVOKE: frozenset({Right.INVOKE, Right.CALLS}),
    Role.DEPLOY: frozenset({Right.READ, Right.CALLS, Right.INVOKE, Right.DEPLOY}),
    Role.ADMIN: frozenset(Right) - {Right.PUBLIC},
}


class Body(StrEnum):
    """The body a state-changing route takes (its Content-Type when it has one)."""

    NONE = "none"  # none expected; a JSON one is tolerated (some clients send "{}")
    JSON = "application/json"
    MULTIPART = "multipart/form-data"


@dataclass(frozen=True)
class Rule:
    right: Right
    body: Body = Body.NONE


# Every route the app serves → its rule (a route without one is refused by the guard).
RULES = web.AppKey("rules", dict[AbstractRoute, Rule])
