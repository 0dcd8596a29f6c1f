"""``faas up``: run the whole platform on this host (faas_cli/up.py does the work)."""

import asyncio
import sys
from pathlib import Path

import click

from common.logs import setup_logging
from faas_cli.up import HOST_CA_BUNDLE, UpConfig, UpError, run


@click.command()
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
@click.option(
    "--agent-metrics-port",
    default=9181,
    show_default=True,
    help="The node agent's GET /metrics (Prometheus), on 127.0.0.1 (0: a free one).",
)
@click.option(
    "--store-metrics-port",
    default=9182,
    show_default=True,
    help="The store's GET /metrics (Prometheus), on 127.0.0.1 (0: a free one).",
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
    agent_metrics_port: int,
    store_metrics_port: int,
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
        agent_metrics_port=agent_metrics_port,
        store_metrics_port=store_metrics_port,
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
