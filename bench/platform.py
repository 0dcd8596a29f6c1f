"""A fresh platform (``faas up``'s :class:`Platform`: nats-server + store + gateway + node
agent processes) on free ports in its own data dir, with the helpers a benchmark needs:
registration, the node's heartbeat, waiting for warm pools."""

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
from nats.aio.client import Client
from nats.js.errors import NoKeysError

from bench.client import Caller
from bench.functions import RUNTIMES, FunctionDef
from common.jetstream import connect
from common.natsauth import ADMIN
from faas_cli.up import HOST_CA_BUNDLE, Platform, UpConfig
from schemas import Layout, NodeState, decode, function_key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_ca_bundle() -> Path | None:
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


class BenchPlatform:
    """``async with BenchPlatform(data_dir, "warm-function") as p: p.url``

    The services' output goes to ``log_path`` (not the terminal); a failure report should
    quote it.
    """

    def __init__(
        self,
        data_dir: Path,
        policy: str,
        *,
        slots: int = 8,
        ca_bundle: Path | None = None,
        log_path: Path | None = None,
        agent_env: dict[str, str] | None = None,
    ) -> None:
        # A node id of its own: an agent removes every container labelled with its node id at
        # start, so two platforms on one Docker engine must not share one.
        self.node_id = f"bench-{secrets.token_hex(4)}"
        env = {"FAAS_AGENT_NODE_ID": self.node_id, "FAAS_AGENT_HEARTBEAT_S": "0.5", **(agent_env or {})}
        self.cfg = UpConfig(
            data_dir=data_dir,
            port=free_port(),
            nats_port=0,
            nats_monitor_port=None,
            agent_metrics_port=0,
            store_metrics_port=0,
            slots=slots,
            policy=policy,
            ca_bundle=ca_bundle,
            grace_s=5,
            extra_env=env,
        )
        self.policy = policy
        self.platform = Platform(self.cfg)
        self.layout = Layout()
        self.log_path = log_path or data_dir / "platform.log"
        self._log: IO[str] | None = None
        self._redirect: contextlib.AbstractContextManager[Any] | None = None
        self._nc: Client | None = None
        self.http: aiohttp.ClientSession | None = None
        # invocations: the lean client (bench/client.py), registrations: aiohttp
        self.calls: Caller | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "not started"
        return self._nc

    async def __aenter__(self) -> "BenchPlatform":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w", encoding="utf-8")  # closed in _close
        # Platform relays every service's output to sys.stderr: send it to the log file.
        self._redirect = contextlib.redirect_stderr(self._log)
        self._redirect.__enter__()
        try:
            await self.platform.start()
            # As the operator: it reads the nodes bucket and the streams.
            self._nc = await connect(self.platform.nats.url, "bench", self.platform.nats.auth(ADMIN))
            # As a user would: with the admin token the gateway wrote at its start.
            token = self.platform.admin_token()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self.http = aiohttp.ClientSession(self.url, headers=headers, connector=aiohttp.TCPConnector(limit=128))
            self.calls = Caller(self.cfg.host, self.cfg.port, token)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        try:
            if self.http is not None:
                await self.http.close()
            if self.calls is not None:
                await self.calls.close()
            if self._nc is not None:
                await self._nc.close()
            await self.platform.stop()
        finally:
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
            if self._log is not None:
                self._log.close()

    # --- registration ---------------------------------------------------------------
    async def register_runtime(self, spec: dict[str, Any]) -> None:
        assert self.http is not None
        async with self.http.post("/v1/runtimes", json=spec) as resp:
            if resp.status != 201:
                raise RuntimeError(f"registering runtime {spec['name']}: {resp.status} {await resp.text()}")

    async def register(self, fn: FunctionDef, runtime: dict[str, Any] | None = None) -> None:
        """The function's runtime (``runtime``, default its own), then the function
        (``POST /v1/functions``)."""
        assert self.http is not None
        await self.register_runtime(runtime or RUNTIMES[fn.runtime])
        form = aiohttp.FormData()
        form.add_field("name", fn.name)
        form.add_field("runtime", fn.runtime)
        if fn.handler:
            form.add_field("handler", fn.handler)
        if fn.calls:
            form.add_field("calls", fn.calls)
        form.add_field("module", fn.archive(), filename=f"{fn.name}.zip", content_type="application/zip")
        async with self.http.post("/v1/functions", data=form) as resp:
            if resp.status != 201:
                raise RuntimeError(f"registering {fn.name}: {resp.status} {await resp.text()}")
            record = await resp.json()
        if bool(record.get("has_dependencies")) != fn.has_dependencies:
            raise RuntimeError(f"{fn.name}: the gateway saw has_dependencies={record.get('has_dependencies')}")

    # --- the node's heartbeat -------------------------------------------------------
    async def nodes(self) -> list[NodeState]:
        kv = await self.nc.jetstream().key_value(self.layout.nodes_bucket)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        states = []
        for key in keys:
            with contextlib.suppress(Exception):
                entry = await kv.get(key)
                if entry.value:
                    states.append(decode(NodeState, entry.value))
        return states

    async def warm_count(self, fn: FunctionDef) -> int:
        """Idle warm containers for ``fn`` on all nodes: its function pool under
        warm-function and adaptive, its runtime's pool under warm-runtime."""
        total = 0
        for state in await self.nodes():
            if self.policy in ("warm-function", "adaptive"):
                total += state.warm_functions.get(function_key(fn.name, 1), 0)
            elif self.policy == "warm-runtime":
                total += state.warm_runtimes.get(fn.runtime, 0)
        return total

    async def stem_count(self, runtime: str) -> int:
        """Idle stem cells (the runtime's own pool) of ``runtime`` on all nodes."""
        return sum(state.warm_runtimes.get(runtime, 0) for state in await self.nodes())

    async def wait_stems(self, runtime: str, at_least: int, timeout: float = 60.0) -> int:
        """Poll the heartbeat until ``at_least`` stem cells of ``runtime`` are idle; returns
        the count seen last."""
        return int(await poll(lambda: self.stem_count(runtime), lambda n: n >= at_least, timeout, 0.1))

    async def wait_warm(self, fn: FunctionDef, at_least: int, timeout: float = 60.0) -> int:
        """Poll the heartbeat until ``at_least`` idle warm containers serve ``fn``; returns
        the count seen last (less than asked if ``timeout`` ran out)."""
        return int(await poll(lambda: self.warm_count(fn), lambda n: n >= at_least, timeout, 0.2))


async def poll(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float, every: float) -> Any:
    """Call ``get`` until ``done(value)`` or ``timeout``; returns the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await get()
        if done(value) or loop.time() >= deadline:
            return value
        await asyncio.sleep(every)
