"""What the call and job commands share: a group whose first argument may be an id, the
logs of a run (stored or live), and the answer to a cancel."""

from typing import Any

import click

from faas_cli import exits
from faas_cli.app import App
from faas_cli.client import seg
from faas_cli.follow import follow
from faas_cli.render import Mode


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to ``show``:
    ``faas call 17`` is ``faas call show 17``."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


def cancel_message(kind: str, body: dict[str, Any]) -> str:
    status = body.get("status")
    if status == "CANCELLED":
        return f"{kind} {body.get('id')} cancelled"
    return f"cancel requested: {kind} {body.get('id')} is {status} until its node has stopped it"


def show_logs(app: App, kind: str, id: str, live: bool) -> None:
    """The stored lines of a call or job, or (``live``) every line until the run ends. Exit 1
    if a followed run ended other than DONE / FINISHED."""
    render = app.render
    if not live:
        page = app.run(app.client.get(f"/v1/{kind}s/{seg(id)}/logs"))
        if render.mode is Mode.JSON:
            render.json(page)
            return
        for entry in page.get("lines", []):
            render.log_line(entry)
        if page.get("truncated"):
            render.note(f"[the {kind}'s output was cut at its log limit]")
        return
    end = app.run(follow(app.client, render, kind, id))
    if end is None:
        raise exits.CliError("the log stream closed before the end (the gateway stopped?)", exits.UNAVAILABLE)
    if render.mode is Mode.JSON:
        render.json_line(end)
    else:
        render.note(f"{kind} {end.get('id')} ended {end.get('status')}")
    if end.get("status") not in {"DONE", "FINISHED"}:
        raise exits.CliError(f"{kind} {end.get('id')} ended {end.get('status')}", exits.FAILED)
