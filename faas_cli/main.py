"""The ``faas`` command line: the root group and its global options. Each command group
lives in ``faas_cli/commands/``; everything printed goes through ``faas_cli/render.py``;
exit codes are in ``faas_cli/exits.py``."""

from pathlib import Path

import click

from faas_cli.app import OUTPUT_CHOICE, App
from faas_cli.client import Client
from faas_cli.commands.calls import call, calls, logs
from faas_cli.commands.completion import completion
from faas_cli.commands.functions import function
from faas_cli.commands.invoke import invoke
from faas_cli.commands.jobs import job, jobs
from faas_cli.commands.nodes import nodes
from faas_cli.commands.runtimes import runtime
from faas_cli.commands.tokens import _expiry, token
from faas_cli.commands.up import up
from faas_cli.render import Mode

__all__ = ["_expiry", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--gateway",
    envvar="FAAS_GATEWAY_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Gateway base URL (env FAAS_GATEWAY_URL).",
)
@click.option(
    "--token",
    envvar="FAAS_TOKEN",
    help="API token (env FAAS_TOKEN). Default: the admin token `faas up` wrote to <data-dir>/admin.token.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Where `faas up` keeps its data (and the admin token).",
)
@click.option(
    "-o",
    "--output",
    type=OUTPUT_CHOICE,
    envvar="FAAS_OUTPUT",
    default=None,
    help="table (default on a terminal), plain (default when piped) or json (env FAAS_OUTPUT).",
)
@click.pass_context
def cli(ctx: click.Context, gateway: str, token: str | None, data_dir: Path, output: str | None) -> None:
    """Run functions and jobs in containers, on NATS JetStream and Docker.

    Exit codes: 0 ok, 1 the call or job failed, 2 usage, 3 not found, 4 token refused,
    5 conflict, 6 gateway unavailable or wait ran out, 7 request refused.
    Shell completion: eval "$(faas completion bash)" (zsh, fish)."""
    ctx.meta["data_dir"] = data_dir
    # A Client handed in as ``obj`` (``cli.main(obj=...)``, a test's fake) is used as it is.
    given = ctx.obj if isinstance(ctx.obj, Client) else None
    ctx.obj = App(gateway, token, data_dir, Mode(output) if output else None, given)


for command in (up, runtime, function, invoke, calls, call, logs, jobs, job, nodes, token, completion):
    cli.add_command(command)
