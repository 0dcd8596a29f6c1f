"""``/v1/tokens`` (admin): create a token (its secret is in this answer and nowhere else),
list the tokens (records, never secrets), revoke one by name."""

import secrets
from datetime import timedelta

from aiohttp import web

from gateway.apidoc import documented
from gateway.deps import deps
from gateway.errors import bad_request, check_name
from gateway.web import json_response, model_json, parse_model, read_json
from schemas import TokenRecord, TokenRequest
from schemas.clock import utcnow
from schemas.http import IssuedToken, ListedToken, NamePath, Revoked

TOKEN_BODY_LIMIT = 4096


def _listed(record: TokenRecord) -> dict[str, object]:
    return {**model_json(record), "expired": record.expired()}


@documented("Create a token", body=TokenRequest, answers={201: IssuedToken}, errors=(409, 503))
async def create(request: web.Request) -> web.Response:
    """``POST /v1/tokens`` ``{"role"[, "name"][, "expires_in_s" | "expires_at"]}`` → 201
    ``{"token", "name", "role", "created_at", "expires_at"}``; 409 if the name is taken."""
    req = parse_model(TokenRequest, await read_json(request, TOKEN_BODY_LIMIT), "token request")
    now = utcnow()
    expires_at = req.expires_at
    if req.expires_in_s is not None:
        expires_at = now + timedelta(seconds=req.expires_in_s)
    elif expires_at is not None and expires_at <= now:
        raise bad_request(f"expires_at {expires_at.isoformat()} is in the past")
    name = req.name or f"{req.role.value}-{secrets.token_hex(3)}"
    issued = await deps(request).tokens.create(name, req.role, expires_at)
    return json_response(
        {"token": issued.token, **model_json(issued.record)},
        status=201,
        # The one answer holding a secret: no cache may keep it.
        headers={"Cache-Control": "no-store"},
    )


@documented("Every token (never a secret)", answers={200: list[ListedToken]}, errors=(503,))
async def list_all(request: web.Request) -> web.Response:
    """``GET /v1/tokens`` → ``[{"name", "role", "created_at", "expires_at", "expired"}]``."""
    return json_response([_listed(r) for r in await deps(request).tokens.all()])


@documented("Revoke a token", path=NamePath, answers={200: Revoked}, errors=(400, 404, 503))
async def revoke(request: web.Request) -> web.Response:
    """``DELETE /v1/tokens/{name}`` → 200 ``{"revoked": name}``; 404 if there is none."""
    name = check_name("token", request.match_info["name"])
    await deps(request).tokens.revoke(name)
    return json_response(model_json(Revoked(revoked=name)))
