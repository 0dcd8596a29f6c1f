"""The one middleware that decides whether a request reaches its route, in this order:

1. ``GET /healthz``, ``GET /openapi.json`` and the static files of ``/ui/`` and ``/docs``
   always do (a load balancer's probe, the API's description, the dashboard's code: none
   tells anything about what the platform holds).
2. A request a web page on another site could have made is refused, 403 (``crosssite``):
   whatever the auth mode, so that ``faas up --no-auth`` on a laptop cannot be driven by
   a page the laptop's browser opens.
3. With auth on: no ``Authorization: Bearer <token>``, or an unknown, revoked or expired
   token, is 401 (before anything else about the request is looked at, an unknown route
   included); a token whose role lacks the route's right is 403 (``access``).
4. A state-changing request with a body must send the content type its route takes: 415.
"""

from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import AbstractRoute

from gateway.access import ROLE_RIGHTS, Body, Right, Rule
from gateway.crosssite import SameSite
from gateway.errors import GatewayError, forbidden, unauthorized
from gateway.tokens import Tokens
from schemas import Role

_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_WHAT = {
    Right.READ: "read runtimes, functions and jobs",
    Right.CALLS: "read calls",
    Right.INVOKE: "invoke functions",
    Right.DEPLOY: "deploy runtimes, functions and jobs",
    Right.ADMIN: "manage tokens",
}


def _roles_with(right: Right) -> str:
    return " or ".join(role.value for role in Role if right in ROLE_RIGHTS[role])


class Guard:
    def __init__(self, rules: dict[AbstractRoute, Rule], same_site: SameSite, tokens: Tokens | None) -> None:
        """``tokens`` None: auth is off (``--no-auth``, loopback only)."""
        self._rules = rules
        self._same_site = same_site
        self._tokens = tokens

    async def check(self, request: web.Request) -> None:
        """Raises the GatewayError that answers a request that may not go on."""
        rule = self._rules.get(request.match_info.route)
        if rule is not None and rule.right is Right.PUBLIC:
            return
        headers = request.headers
        refusal = self._same_site.refusal(
            headers.get(hdrs.HOST), headers.get(hdrs.ORIGIN), headers.get("Sec-Fetch-Site")
        )
        if refusal is not None:
            raise forbidden(refusal)
        if self._tokens is not None:
            await self._authorize(request, rule, self._tokens)
        if rule is not None and request.method in _STATE_CHANGING and request.body_exists:
            _check_body(request, rule.body)

    @staticmethod
    async def _authorize(request: web.Request, rule: Rule | None, tokens: Tokens) -> None:
        raw = request.headers.get(hdrs.AUTHORIZATION)
        if raw is None:
            raise unauthorized("missing 'Authorization: Bearer <token>' header")
        scheme, _, token = raw.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        record = await tokens.find(token)
        if record is None:
            raise unauthorized("invalid token (unknown or revoked)", invalid_token=True)
        if record.expired():
            expired = record.expires_at.isoformat() if record.expires_at else ""
            raise unauthorized(f"token {record.name!r} expired at {expired}", invalid_token=True)
        if rule is None:
            return  # no such route, or not with this method: the router's 404/405 answers
        if rule.right not in ROLE_RIGHTS[record.role]:
            raise forbidden(
                f"token {record.name!r} has role {record.role.value}, which may not {_WHAT[rule.right]}: "
                f"{request.method} {request.path} needs a {_roles_with(rule.right)} token"
            )


def _check_body(request: web.Request, body: Body) -> None:
    # aiohttp says application/octet-stream when the header is missing.
    ctype = request.content_type
    if ctype == body.value or (body is Body.NONE and ctype == Body.JSON.value):
        return
    wanted = "no body" if body is Body.NONE else f"a body with Content-Type: {body.value}"
    raise GatewayError(415, "unsupported_media_type", f"{request.method} {request.path} takes {wanted}, not {ctype!r}")


def guard_middleware(guard: Guard) -> Any:
    @web.middleware
    async def guard_requests(request: web.Request, handler: Any) -> web.StreamResponse:
        await guard.check(request)
        response: web.StreamResponse = await handler(request)
        return response

    return guard_requests
