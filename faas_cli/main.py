"""The ``faas`` command line."""

import asyncio
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from common.logs import setup_logging
from faas_cli.client import Client, GatewayError, find_token
from faas_cli.tree import tree_lines
from faas_cli.up import HOST_CA_BUNDLE, UpConfig, UpError, run

ROLES = ("admin", "deploy", "invoke", "read")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except GatewayError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot reach the gateway: {err}") from None


@click.group()
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
@click.pass_context
def cli(ctx: click.Context, gateway: str, token: str | None, data_dir: Path) -> None:
    """Run functions and jobs in containers, on NATS JetStream and Docker."""
    ctx.meta["data_dir"] = data_dir
    if ctx.invoked_subcommand == "up":
        return
    try:
        found, source = find_token(token, data_dir)
    except GatewayError as err:
        raise click.ClickException(str(err)) from None
    ctx.obj = Client(gateway, found, source)


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where NATS, the database and the admin token are kept [default: the global --data-dir, data].",
)
@click.option("--port", default=8080, show_default=True, help="Gateway HTTP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Gateway bind address.")
@click.option("--nats-port", default=4222, show_default=True, help="NATS client port (0: a free one).")
@click.option(
    "--nats-monitor-port",
    default=8222,
    show_default=True,
    help="nats-server's HTTP monitoring port, on 127.0.0.1 only (0: a free one).",
)
@click.option("--slots", default=8, show_default=True, help="Calls the node agent runs at once.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On stop (Ctrl-C), seconds the node agent's running calls may take to finish.",
)
@click.option(
    "--policy",
    type=click.Choice(["adaptive", "none", "warm-runtime", "warm-function"]),
    default="adaptive",
    show_default=True,
    help="Invocation policy of the node agent (adaptive: stem cells per runtime + warm containers per function).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help=f"CA bundle handed to containers (default: {HOST_CA_BUNDLE} if present).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve the API without tokens (the original route set as it was); only on a loopback --host.",
)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
def up(
    ctx: click.Context,
    data_dir: Path | None,
    port: int,
    host: str,
    nats_port: int,
    nats_monitor_port: int,
    slots: int,
    grace: float,
    policy: str,
    ca_bundle: Path | None,
    no_auth: bool,
    log_level: str,
) -> None:
    """Run the whole platform on this host: NATS, store (SQLite), gateway, one node agent.

    An admin token is written to <data-dir>/admin.token at the first start; the other
    `faas` commands find it there by themselves."""
    setup_logging(log_level)
    if ca_bundle is None and HOST_CA_BUNDLE.exists():
        ca_bundle = HOST_CA_BUNDLE
    cfg = UpConfig(
        data_dir=data_dir or ctx.meta["data_dir"],
        auth=not no_auth,
        port=port,
        host=host,
        nats_port=nats_port,
        nats_monitor_port=nats_monitor_port,
        slots=slots,
        grace_s=grace,
        policy=policy,
        ca_bundle=ca_bundle,
        extra_env={
            "FAAS_STORE_LOG_LEVEL": log_level,
            "FAAS_GATEWAY_LOG_LEVEL": log_level,
            "FAAS_AGENT_LOG_LEVEL": log_level,
        },
    )
    try:
        cfg.check()
    except UpError as err:
        raise click.UsageError(str(err)) from None
    sys.exit(asyncio.run(run(cfg)))


@cli.group()
def runtime() -> None:
    """Register and list runtimes."""


@runtime.command("register")
@click.option("--name", required=True)
@click.option("--image", required=True, help="Docker image, e.g. faas-python.")
@click.option("--path", default="/app", show_default=True, help="Directory the function is placed in.")
@click.option("--dependencies", default="", help="Command that installs the function's requirements.")
@click.option("--run", "run_cmd", required=True, help="Command that runs the function.")
@click.option(
    "--handler-command", help="Command starting the handler shim, e.g. 'python3 /opt/faas/faas_bootstrap.py'."
)
@click.pass_obj
def runtime_register(
    client: Client, name: str, image: str, path: str, dependencies: str, run_cmd: str, handler_command: str | None
) -> None:
    spec = {"name": name, "image": image, "path": path, "dependencies": dependencies, "run": run_cmd}
    if handler_command:
        spec["handler_command"] = handler_command
    _print(_run(client.register_runtime(spec)))


@runtime.command("list")
@click.pass_obj
def runtime_list(client: Client) -> None:
    _print(_run(client.request("GET", "/v1/runtimes"))[1])


@cli.group()
def function() -> None:
    """Deploy and list functions."""


@function.command("deploy")
@click.argument("name")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--runtime", required=True)
@click.option("--handler", help="module:function served by the runtime's handler shim (fast, warm-reusable).")
@click.option("--timeout", type=float, help="Seconds a call may run.")
@click.option("--memory", type=int, help="Memory limit in MB.")
@click.option("--cpus", type=float, help="CPU share in cores.")
@click.option("--pids", type=int, help="Processes/threads a call may have.")
@click.option("--network/--no-network", default=None, help="Network access for calls.")
@click.pass_obj
def function_deploy(
    client: Client,
    name: str,
    source: Path,
    runtime: str,
    handler: str | None,
    timeout: float | None,
    memory: int | None,
    cpus: float | None,
    pids: int | None,
    network: bool | None,
) -> None:
    """Upload SOURCE (a directory, .zip or .tar.gz) as a new version of NAME."""
    wanted = {"timeout_s": timeout, "memory_mb": memory, "cpus": cpus, "pids": pids, "network": network}
    limits = {k: v for k, v in wanted.items() if v is not None}
    _print(_run(client.deploy(name, runtime, source, limits or None, handler)))


@function.command("list")
@click.pass_obj
def function_list(client: Client) -> None:
    _print(_run(client.request("GET", "/v1/functions"))[1])


@cli.command()
@click.argument("name")
@click.argument("params", default="{}")
@click.option("--async", "asynchronous", is_flag=True, help="Return at once with the call id.")
@click.option("--wait", type=float, help="Seconds to wait for the result (sync).")
@click.pass_obj
def invoke(client: Client, name: str, params: str, asynchronous: bool, wait: float | None) -> None:
    """Call function NAME with PARAMS (JSON)."""
    try:
        value = json.loads(params)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"PARAMS is not valid JSON: {err}") from None
    _, body = _run(client.invoke(name, value, asynchronous, wait))
    _print(body)
    if isinstance(body, dict) and body.get("status") in {"ERROR", "TIMEOUT", "CANCELLED"}:
        sys.exit(1)


@cli.command()
@click.option("--function", "function_name")
@click.option("--status")
@click.option("--limit", default=20, show_default=True)
@click.pass_obj
def calls(client: Client, function_name: str | None, status: str | None, limit: int) -> None:
    """List recent calls, newest first."""
    query = {k: v for k, v in {"function": function_name, "status": status, "limit": str(limit)}.items() if v}
    _print(_run(client.request("GET", "/v1/calls", params=query))[1])


@cli.command("call")
@click.argument("call_id")
@click.argument("tree_of", required=False, metavar="[ID]")
@click.pass_obj
def call_show(client: Client, call_id: str, tree_of: str | None) -> None:
    """Show one call by id or number; `faas call tree ID`: the tree of nested calls it belongs to."""
    if call_id == "tree" and tree_of:
        call_tree(client, tree_of)
        return
    _print(_run(client.request("GET", f"/v1/calls/{call_id}"))[1])


def call_tree(client: Client, call_id: str) -> None:
    """The call's tree, one call a line (faas_cli/tree.py)."""
    for line in tree_lines(_run(client.request("GET", f"/v1/calls/{call_id}/tree"))[1]):
        click.echo(line)


@cli.group()
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
@click.pass_obj
def token_create(client: Client, role: str, name: str | None, expires: str | None) -> None:
    """Create a token; it is printed once, and only its hash is kept."""
    _print(_run(client.create_token(role, name, _expiry(expires))))
    click.echo("Keep the token now: it cannot be shown again.", err=True)


@token.command("list")
@click.pass_obj
def token_list(client: Client) -> None:
    """The tokens: name, role, created_at, expires_at, expired (never the tokens themselves)."""
    _print(_run(client.request("GET", "/v1/tokens"))[1])


@token.command("revoke")
@click.argument("name")
@click.pass_obj
def token_revoke(client: Client, name: str) -> None:
    """Revoke token NAME: every gateway refuses it within a second or two."""
    _print(_run(client.request("DELETE", f"/v1/tokens/{name}"))[1])
