"""``faas function deploy|list|describe|versions|delete``."""

from pathlib import Path

import click

from faas_cli.app import App, with_app
from faas_cli.client import pack, seg
from faas_cli.complete import function_names, runtime_names
from faas_cli.progress import upload_progress


@click.group()
def function() -> None:
    """Deploy, list, describe and delete functions."""


@function.command("deploy")
@click.argument("name")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--runtime", required=True, shell_complete=runtime_names)
@click.option("--handler", help="module:function served by the runtime's handler shim (fast, warm-reusable).")
@click.option("--timeout", type=float, help="Seconds a call may run.")
@click.option("--memory", type=int, help="Memory limit in MB.")
@click.option("--cpus", type=float, help="CPU share in cores.")
@click.option("--pids", type=int, help="Processes/threads a call may have.")
@click.option("--network/--no-network", default=None, help="Network access for calls.")
@with_app
def function_deploy(
    app: App,
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
    """Upload SOURCE (a directory, .zip or .tar.gz) as a new version of NAME.

    A progress bar shows the upload on a terminal. Dependencies are installed on a node at the
    version's first call: `faas invoke --follow` shows that install's output live."""
    wanted = {"timeout_s": timeout, "memory_mb": memory, "cpus": cpus, "pids": pids, "network": network}
    limits = {k: v for k, v in wanted.items() if v is not None}
    archive = pack(source)
    label = f"uploading {archive[1]}"
    with upload_progress(app.render.err, len(archive[0]), label) as on_sent:
        record = app.run(app.client.deploy(name, runtime, archive, limits or None, handler, on_sent))
    app.render.record(record)


@function.command("list")
@with_app
def function_list(app: App) -> None:
    """The latest version of every function."""
    app.render.listing("functions", app.run(app.client.get("/v1/functions")))


@function.command("describe")
@click.argument("name", shell_complete=function_names)
@with_app
def function_describe(app: App, name: str) -> None:
    """NAME's latest version: runtime, handler, limits, digest, and its version numbers."""
    app.render.record(app.run(app.client.get(f"/v1/functions/{seg(name)}")))


@function.command("versions")
@click.argument("name", shell_complete=function_names)
@with_app
def function_versions(app: App, name: str) -> None:
    """NAME's versions still kept (-o json: the API's `versions` list)."""
    detail = app.run(app.client.get(f"/v1/functions/{seg(name)}"))
    versions = detail.get("versions", [])
    rows = [{"version": v, "latest": v == detail.get("version")} for v in versions]
    app.render.listing("versions", rows, raw=versions)


@function.command("delete")
@click.argument("name", shell_complete=function_names)
@with_app
def function_delete(app: App, name: str) -> None:
    """Delete NAME: it can no longer be called (its calls' records stay)."""
    _, body = app.run(app.client.request("DELETE", f"/v1/functions/{seg(name)}"))
    app.render.done(f"deleted function {name}", body)
