"""``faas nodes``: the node agents, their slots and what they hold warm."""

import click

from faas_cli.app import App, with_app


@click.command()
@with_app
def nodes(app: App) -> None:
    """Every node agent with a heartbeat: fresh (heard from in the last 6 s), slots, free
    slots, and idle warm containers per runtime and per function@version."""
    app.render.listing("nodes", app.run(app.client.get("/v1/nodes")))
