"""``faas calls``, ``faas call [show] ID``, ``faas call cancel ID``, ``faas call tree ID``,
``faas logs ID [-f]``."""

import click

from faas_cli.app import App, with_app
from faas_cli.client import seg
from faas_cli.commands.shared import DefaultGroup, cancel_message, show_logs
from faas_cli.complete import function_names
from faas_cli.tree import tree_lines

STATUSES = ("QUEUED", "RUNNING", "DONE", "ERROR", "TIMEOUT", "CANCELLED")


@click.command()
@click.option("--function", "function_name", shell_complete=function_names, help="Only this function's calls.")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only calls with this status.")
@click.option("--since", help="Created at or after (ISO 8601; UTC unless it says).")
@click.option("--until", help="Created before (ISO 8601).")
@click.option("--limit", default=20, show_default=True, help="At most this many (1-1000).")
@click.option("--cursor", help="The next page (the cursor a previous page gave).")
@with_app
def calls(
    app: App,
    function_name: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Recent calls, newest first (-o json: the API's page, {"items", "next_cursor"})."""
    wanted = {"function": function_name, "status": status and status.upper(), "since": since, "until": until}
    query = {k: v for k, v in {**wanted, "limit": str(limit), "cursor": cursor}.items() if v}
    page = app.run(app.client.get("/v1/calls", **query))
    app.render.listing("calls", page["items"], raw=page)
    if page.get("next_cursor"):
        app.render.note(f"more: --cursor {page['next_cursor']}")


@click.group(cls=DefaultGroup)
def call() -> None:
    """Show, cancel or draw the tree of one call: `faas call ID` shows it."""


@call.command("show")
@click.argument("call_id")
@with_app
def call_show(app: App, call_id: str) -> None:
    """Show call CALL_ID (its id, or its number)."""
    app.render.record(app.run(app.client.get(f"/v1/calls/{seg(call_id)}")))


@call.command("cancel")
@click.argument("call_id")
@with_app
def call_cancel(app: App, call_id: str) -> None:
    """Cancel call CALL_ID (its id, or its number): a queued call never runs, a running one is stopped.
    Exit 5 if it has already ended."""
    _, body = app.run(app.client.request("POST", f"/v1/calls/{seg(by_id(app, call_id))}/cancel"))
    app.render.done(cancel_message("call", body), body)


@call.command("tree")
@click.argument("call_id")
@with_app
def call_tree(app: App, call_id: str) -> None:
    """The tree of nested calls CALL_ID belongs to, from its root: one call a line."""
    tree = app.run(app.client.get(f"/v1/calls/{seg(by_id(app, call_id))}/tree"))
    app.render.tree(tree_lines(tree), tree)


@click.command()
@click.argument("call_id")
@click.option("-f", "--follow", "live", is_flag=True, help="Stream the output live until the call ends.")
@with_app
def logs(app: App, call_id: str, live: bool) -> None:
    """Call CALL_ID's output (its id, or its number); -f follows it live.

    -o json: the stored page; with -f, one JSON object a line, each {"at","stream","text"},
    the last {"id","status"}."""
    show_logs(app, "call", by_id(app, call_id), live)


def by_id(app: App, call: str) -> str:
    """A call's id from its id or its number (which only ``GET /v1/calls/{n}`` takes)."""
    if not call.isdigit():
        return call
    return str(app.run(app.client.get(f"/v1/calls/{call}"))["id"])
