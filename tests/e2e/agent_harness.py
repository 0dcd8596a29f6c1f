"""Running node agents in tests, and publishing invocations as any NATS client would."""

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from common.natsserver import NatsServer
from node_agent.settings import AgentSettings
from schemas import Finished, Invocation, Layout, decode_event, encode
from tests.natsusers import service_settings


def agent_settings(server: NatsServer, layout: Layout, cache: Path, **over: Any) -> AgentSettings:
    values: dict[str, Any] = dict(
        **service_settings(server, "agent"),
        prefix=layout.prefix,
        node_id="n" + secrets.token_hex(3),
        slots=4,
        ack_wait_s=5,
        fetch_timeout_s=0.5,
        grace_s=5,
        cache_dir=cache,
        metrics_port=0,
    )
    values.update(over)
    return AgentSettings(**values)


class CallWatcher:
    """Subscribes to a call's events before it is published, so none is missed."""

    def __init__(self, nc: Client, layout: Layout, call_id: str) -> None:
        self.nc, self.layout, self.call_id = nc, layout, call_id
        self.events: list[Any] = []
        self._done = asyncio.Event()
        self._finished: Finished | None = None

    async def __aenter__(self) -> "CallWatcher":
        async def on_msg(msg: Any) -> None:
            event = decode_event(msg.data)
            self.events.append(event)
            if isinstance(event, Finished) and self._finished is None:
                self._finished = event
                self._done.set()

        self._sub = await self.nc.subscribe(self.layout.events_of(self.call_id), cb=on_msg)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()

    async def finished(self, timeout: float = 60) -> Finished:
        await asyncio.wait_for(self._done.wait(), timeout)
        assert self._finished is not None
        return self._finished

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def publish(nc: Client, layout: Layout, runtime: str, inv: Invocation | bytes) -> int:
    data = inv if isinstance(inv, bytes) else encode(inv)
    ack = await nc.jetstream().publish(layout.invoke_runtime(runtime), data, stream=layout.invoke_stream)
    return ack.seq


async def call(
    nc: Client,
    layout: Layout,
    runtime: str,
    function: str,
    params: Any = None,
    timeout: float = 60,
    **inv: Any,
) -> Finished:
    call_id = secrets.token_hex(8)
    async with CallWatcher(nc, layout, call_id) as w:
        await publish(nc, layout, runtime, Invocation(id=call_id, function=function, params=params or {}, **inv))
        return await w.finished(timeout)


class Collector:
    """Every raw message on a subject, for assertions on exactly what was published."""

    def __init__(self, nc: Client, subject: str) -> None:
        self.nc, self.subject = nc, subject
        self.messages: list[bytes] = []

    async def __aenter__(self) -> "Collector":
        async def on_msg(msg: Any) -> None:
            self.messages.append(msg.data)

        self._sub = await self.nc.subscribe(self.subject, cb=on_msg)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._sub.unsubscribe()


def agent_env(settings: AgentSettings) -> dict[str, str]:
    """The settings as ``FAAS_AGENT_*`` environment variables (the NATS password in clear)."""
    env = {f"FAAS_AGENT_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None}
    env["FAAS_AGENT_RUNTIMES"] = json.dumps(settings.runtimes)
    if settings.nats_password is not None:
        env["FAAS_AGENT_NATS_PASSWORD"] = settings.nats_password.get_secret_value()
    return env


async def spawn_agent(settings: AgentSettings) -> asyncio.subprocess.Process:
    """A node agent in its own process (``python -m node_agent``), to be killed by a test."""
    import os
    import sys

    env = agent_env(settings)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "node_agent",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
