"""``faas job run IMAGE -- CMD...``, ``faas jobs``, ``faas job [show] ID``,
``faas job logs ID [-f]``, ``faas job cancel ID``."""

import os
import re
from typing import Any

import click

from faas_cli import exits
from faas_cli.app import App, with_app
from faas_cli.client import seg
from faas_cli.commands.shared import DefaultGroup, cancel_message, show_logs
from faas_cli.follow import final_record, follow
from faas_cli.render import Mode

STATUSES = ("QUEUED", "RUNNING", "FINISHED", "ERROR", "TIMEOUT", "CANCELLED")


def default_name(image: str) -> str:
    """A job's name from its image: ``registry.example/team/report:3`` → ``report``."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "-", last).lstrip("-_")[:63]
    return name or "job"


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=option)
        out[key] = value
    return out


def _secrets(names: tuple[str, ...]) -> dict[str, str]:
    """``--secret-env NAME``: the value is this process's $NAME (never on a command line)."""
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise click.BadParameter(f"not set in this environment: {', '.join(missing)}", param_hint="--secret-env")
    return {n: os.environ[n] for n in names}


@click.command()
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only jobs with this status.")
@click.option("--limit", default=20, show_default=True, help="At most this many (1-1000).")
@click.option("--cursor", help="The next page (the cursor a previous page gave).")
@with_app
def jobs(app: App, status: str | None, limit: int, cursor: str | None) -> None:
    """Recent jobs, newest first (-o json: the API's page, {"items", "next_cursor"})."""
    query = {k: v for k, v in {"status": status and status.upper(), "limit": str(limit), "cursor": cursor}.items() if v}
    page = app.run(app.client.get("/v1/jobs", **query))
    app.render.listing("jobs", page["items"], raw=page)
    if page.get("next_cursor"):
        app.render.note(f"more: --cursor {page['next_cursor']}")


@click.group(cls=DefaultGroup)
def job() -> None:
    """Run, show, follow and cancel container jobs: `faas job ID` shows one."""


@job.command("run")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", help="Job name [default: from the image].")
@click.option("--description", default="", help="What it is for.")
@click.option("--priority", type=click.IntRange(0, 9), default=5, show_default=True, help="Higher starts first.")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE", help="An environment variable (repeat).")
@click.option(
    "--secret-env",
    multiple=True,
    metavar="NAME",
    help="Pass $NAME from this environment as a secret: never in records, events or logs (repeat).",
)
@click.option("--timeout", type=float, help="Seconds it may run [default: the node's maximum].")
@click.option("--memory", type=int, help="Memory limit in MB.")
@click.option("--cpus", type=float, help="CPU share in cores.")
@click.option("--user", help="uid[:gid] or a name [default: the image's user].")
@click.option("-f", "--follow", "live", is_flag=True, help="Follow its output until it ends; exit 1 unless FINISHED.")
@with_app
def job_run(
    app: App,
    image: str,
    command: tuple[str, ...],
    name: str | None,
    description: str,
    priority: int,
    env: tuple[str, ...],
    secret_env: tuple[str, ...],
    timeout: float | None,
    memory: int | None,
    cpus: float | None,
    user: str | None,
    live: bool,
) -> None:
    """Run COMMAND in a container of IMAGE, once: `faas job run faas-python -- python3 -c 'print(42)'`.

    Without COMMAND, the image's own. Prints the job's record (plain: its id alone)."""
    container: dict[str, Any] = {"image": image, "command": list(command), "env": _pairs(env, "--env")}
    if secret_env:
        container["secret_env"] = _secrets(secret_env)
    for key, value in {"memory_mb": memory, "cpus": cpus, "user": user}.items():
        if value is not None:
            container[key] = value
    spec: dict[str, Any] = {
        "name": name or default_name(image),
        "description": description,
        "priority": priority,
        "container": container,
    }
    if timeout is not None:
        spec["timeout_s"] = timeout
    _, record = app.run(app.client.request("POST", "/v1/jobs", json=spec))
    render = app.render
    if not live:
        if render.mode is Mode.PLAIN:
            click.echo(record["id"])  # id=$(faas job run ...)
        else:
            render.record(record)
        return
    render.note(f"job {record['id']} (#{record.get('number')}) queued; following its output")
    end = app.run(follow(app.client, render, "job", record["id"]))
    final = app.run(final_record(app.client, "job", record["id"]))
    if render.mode is Mode.JSON:
        render.json_line(final)
    else:
        render.note(
            f"job {record['id']} ended {final.get('status')} (exit code {final.get('result', {}).get('exit_code')})"
        )
    if end is None or final.get("status") != "FINISHED":
        raise exits.CliError(f"job {record['id']} ended {final.get('status')}", exits.FAILED)


@job.command("show")
@click.argument("job_id")
@with_app
def job_show(app: App, job_id: str) -> None:
    """Show job JOB_ID."""
    app.render.record(app.run(app.client.get(f"/v1/jobs/{seg(job_id)}")))


@job.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", "live", is_flag=True, help="Stream the output live until the job ends.")
@with_app
def job_logs(app: App, job_id: str, live: bool) -> None:
    """Job JOB_ID's output; -f follows it live (exit 1 if it ends other than FINISHED)."""
    show_logs(app, "job", job_id, live)


@job.command("cancel")
@click.argument("job_id")
@with_app
def job_cancel(app: App, job_id: str) -> None:
    """Cancel job JOB_ID: a queued job never starts, a running one is stopped (SIGTERM, grace,
    SIGKILL). Exit 5 if it has already ended."""
    _, body = app.run(app.client.request("POST", f"/v1/jobs/{seg(job_id)}/cancel"))
    app.render.done(cancel_message("job", body), body)
