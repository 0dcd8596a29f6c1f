"""``faas runtime register|list|show|delete``."""

import click

from faas_cli.app import App, with_app
from faas_cli.client import seg
from faas_cli.complete import runtime_names


@click.group()
def runtime() -> None:
    """Register, list and delete runtimes."""


@runtime.command("register")
@click.option("--name", required=True)
@click.option("--image", required=True, help="Docker image, e.g. faas-python.")
@click.option("--path", default="/app", show_default=True, help="Directory the function is placed in.")
@click.option("--dependencies", default="", help="Command that installs the function's requirements.")
@click.option("--run", "run_cmd", required=True, help="Command that runs the function.")
@click.option(
    "--handler-command", help="Command starting the handler shim, e.g. 'python3 /opt/faas/faas_bootstrap.py'."
)
@with_app
def runtime_register(
    app: App, name: str, image: str, path: str, dependencies: str, run_cmd: str, handler_command: str | None
) -> None:
    """Register (or replace) runtime NAME."""
    spec = {"name": name, "image": image, "path": path, "dependencies": dependencies, "run": run_cmd}
    if handler_command:
        spec["handler_command"] = handler_command
    app.render.record(app.run(app.client.register_runtime(spec)))


@runtime.command("list")
@with_app
def runtime_list(app: App) -> None:
    """Every runtime."""
    app.render.listing("runtimes", app.run(app.client.get("/v1/runtimes")))


@runtime.command("show")
@click.argument("name", shell_complete=runtime_names)
@with_app
def runtime_show(app: App, name: str) -> None:
    """One runtime."""
    app.render.record(app.run(app.client.get(f"/v1/runtimes/{seg(name)}")))


@runtime.command("delete")
@click.argument("name", shell_complete=runtime_names)
@with_app
def runtime_delete(app: App, name: str) -> None:
    """Delete runtime NAME (refused, exit 5, while functions use it)."""
    _, body = app.run(app.client.request("DELETE", f"/v1/runtimes/{seg(name)}"))
    app.render.done(f"deleted runtime {name}", body)
