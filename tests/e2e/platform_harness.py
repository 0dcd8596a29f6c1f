"""Runs the real platform (``faas up``'s Platform: nats-server + store + gateway + agent
processes) on free ports in a temporary data dir."""

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from faas_cli.up import Platform, UpConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_platform(data_dir: Path, **over: Any) -> AsyncIterator[Platform]:
    # A node id of its own: never the host name another test's (or a developer's) agent uses.
    extra_env = {"FAAS_AGENT_NODE_ID": "t" + secrets.token_hex(4), **over.pop("extra_env", {})}
    settings: dict[str, Any] = {"slots": 8, "grace_s": 5, **over}
    cfg = UpConfig(
        data_dir=data_dir, port=free_port(), nats_port=0, nats_monitor_port=0, extra_env=extra_env, **settings
    )
    platform = Platform(cfg)
    try:
        await platform.start()
        yield platform
    finally:
        await platform.stop()


def base_url(platform: Platform) -> str:
    return f"http://{platform.cfg.host}:{platform.cfg.port}"


def session(platform: Platform) -> aiohttp.ClientSession:
    """An HTTP client of the platform's gateway sending the admin token `faas up` wrote
    (none with auth off), as the README's curl examples do."""
    token = platform.admin_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(base_url(platform), headers=headers)


async def poll_json(http: aiohttp.ClientSession, url: str, until: Any, timeout: float = 60) -> Any:
    """GET ``url`` until ``until(status, body)`` is true; returns the body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        async with http.get(url) as resp:
            body = await resp.json(content_type=None)
            last = (resp.status, body)
            if until(resp.status, body):
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url}: condition not met within {timeout}s; last answer {last}")
