"""``faas token create|list|revoke`` (an admin token's business)."""

import re
from datetime import UTC, datetime

import click

from faas_cli.app import App, with_app
from faas_cli.client import seg
from faas_cli.render import Mode

ROLES = ("admin", "deploy", "invoke", "read")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (needs an admin token)."""


def _expiry(value: str | None) -> dict[str, object]:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w``, or an ISO date/time (UTC unless it says)."""
    if not value:
        return {}
    if m := _DURATION.match(value):
        return {"expires_in_s": float(m.group(1)) * _UNIT_S[m.group(2).lower()]}
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30d, 12h, 45m, 90s, 2w) nor an ISO date", param_hint="--expires"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return {"expires_at": when.isoformat()}


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--name", help="Unique name (default: <role>-<random>).")
@click.option("--expires", help="Lifetime (30d, 12h, 45m, 2w) or an ISO date; default: never.")
@with_app
def token_create(app: App, role: str, name: str | None, expires: str | None) -> None:
    """Create a token; it is printed once, and only its hash is kept (plain: the token alone)."""
    created = app.run(app.client.create_token(role, name, _expiry(expires)))
    if app.render.mode is Mode.PLAIN:
        click.echo(created["token"])  # FAAS_TOKEN=$(faas token create --role read)
    else:
        app.render.record(created)
    click.echo("Keep the token now: it cannot be shown again.", err=True)


@token.command("list")
@with_app
def token_list(app: App) -> None:
    """The tokens: name, role, created_at, expires_at, expired (never the tokens themselves)."""
    app.render.listing("tokens", app.run(app.client.get("/v1/tokens")))


@token.command("revoke")
@click.argument("name")
@with_app
def token_revoke(app: App, name: str) -> None:
    """Revoke token NAME: every gateway refuses it within a second or two."""
    _, body = app.run(app.client.request("DELETE", f"/v1/tokens/{seg(name)}"))
    app.render.done(f"revoked token {name}", body)
