"""``faas invoke NAME [PARAMS]``: call a function and show its result; on a terminal, its
output (a first call's dependency install included) live while it runs."""

import asyncio
import json
import sys
from typing import Any

import click

from faas_cli import exits
from faas_cli.app import App, with_app
from faas_cli.complete import function_names
from faas_cli.follow import final_record, follow
from faas_cli.render import Mode


def _params(text: str) -> Any:
    """PARAMS: JSON, ``@file`` (JSON in a file) or ``-`` (JSON on stdin)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise click.BadParameter(f"cannot read {text[1:]}: {err.strerror}", param_hint="PARAMS") from None
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not valid JSON: {err}", param_hint="PARAMS") from None


async def _follow_call(app: App, name: str, params: Any, wait: float | None) -> tuple[dict[str, Any] | None, str]:
    """Invoke asynchronously, print the call's output as it comes, then its record
    (None if ``wait`` ran out first); and the call id."""
    client, render = app.client, app.render
    _, queued = await client.invoke(name, params, asynchronous=True, wait=None)
    call_id = str(queued["id"])
    render.note(f"call {call_id} (#{queued.get('number')}) queued; following its output")
    try:
        async with asyncio.timeout(wait):
            end = await follow(client, render, "call", call_id, all_to_stderr=True)
    except TimeoutError:
        return None, call_id
    if end is None:
        render.note("the log stream closed before the call ended")
    return await final_record(client, "call", call_id), call_id


@click.command()
@click.argument("name", shell_complete=function_names)
@click.argument("params", default="{}")
@click.option("--async", "asynchronous", is_flag=True, help="Return at once with the call's id.")
@click.option("--wait", type=float, help="Seconds to wait for the result.")
@click.option(
    "-f/-F",
    "--follow/--no-follow",
    default=None,
    help="Show the call's output live while it runs (default: on a terminal, with -o table).",
)
@with_app
def invoke(app: App, name: str, params: str, asynchronous: bool, wait: float | None, follow: bool | None) -> None:
    """Call function NAME with PARAMS (JSON; @FILE reads it from a file, - from stdin).

    Prints the result (plain: the result alone; -o json: the call record). Exit 1 if the call
    ended ERROR, TIMEOUT or CANCELLED; 6 if --wait ran out first (the call goes on)."""
    value = _params(params)
    render = app.render
    if asynchronous:
        _, queued = app.run(app.client.invoke(name, value, True, None))
        if render.mode is Mode.PLAIN:
            click.echo(queued["id"])  # id=$(faas invoke f --async)
        else:
            render.record(queued)
        return
    if follow is None:
        follow = render.mode is Mode.TABLE
    if follow:
        record, call_id = app.run(_follow_call(app, name, value, wait))
    else:
        status, body = app.run(app.client.invoke(name, value, False, wait))
        record, call_id = (body if status == 200 else None), str(body.get("id"))
        if record is None and render.mode is Mode.JSON:
            render.json(body)
    if record is None:
        raise exits.CliError(
            f"call {call_id} still running after --wait; follow it with: faas logs -f {call_id}", exits.UNAVAILABLE
        )
    render.outcome(record)
    if record.get("status") != "DONE":
        raise exits.CliError(ended(record), exits.FAILED)


def ended(record: dict[str, Any]) -> str:
    """``call ID ended ERROR: Type: the message's last line`` (a traceback ends with what
    matters), on one line."""
    error = record.get("error") or {}
    lines = [line.strip() for line in str(error.get("message", "")).splitlines() if line.strip()]
    detail = f": {error.get('type')}: {lines[-1] if lines else ''}".rstrip(": ") if error else ""
    return f"call {record.get('id')} ended {record.get('status')}{detail}"[:300]
