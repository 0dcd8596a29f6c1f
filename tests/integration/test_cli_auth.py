"""The ``faas`` command against a real gateway: it finds the admin token ``faas up`` wrote by
itself, takes ``--token`` / ``FAAS_TOKEN`` instead, and manages tokens."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client

from common.natsserver import NatsServer
from faas_cli.main import cli
from gateway import Gateway
from schemas import Layout
from tests.integration.test_gateway_support import settings_for


@pytest.fixture
async def gateway(nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = settings_for(nats_server, layout, admin_token_file=tmp_path / "data" / "admin.token")
    async with Gateway(settings) as gw:
        yield gw


async def faas(*args: str, env: dict[str, str] | None = None) -> Result:
    """``faas ARGS`` as a user runs it (in a thread: the CLI runs its own event loop)."""
    runner = CliRunner()
    env = {"FAAS_TOKEN": None, "FAAS_OUTPUT": "json", **(env or {})}
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)


def output(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return json.loads(result.stdout)


async def test_the_cli_finds_the_admin_token_by_itself(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    assert output(await faas("--gateway", gateway.url, "--data-dir", str(data), "runtime", "list")) == []
    monkeypatch.chdir(tmp_path)  # ./data, where `faas up` keeps it by default
    assert output(await faas("--gateway", gateway.url, "runtime", "list")) == []


async def test_no_token_anywhere_says_where_it_looked(gateway: Gateway, tmp_path: Path) -> None:
    empty = tmp_path / "elsewhere"
    result = await faas("--gateway", gateway.url, "--data-dir", str(empty), "runtime", "list")
    assert result.exit_code == 4  # token refused (faas_cli/exits.py)
    assert "HTTP 401" in result.output and "no FAAS_TOKEN" in result.output and str(empty) in result.output


async def test_token_create_list_revoke(gateway: Gateway, tmp_path: Path) -> None:
    base = ("--gateway", gateway.url, "--data-dir", str(tmp_path / "data"))
    created = output(await faas(*base, "token", "create", "--role", "invoke", "--name", "ci", "--expires", "12h"))
    assert created["name"] == "ci" and created["role"] == "invoke" and created["token"].startswith("faas_")
    assert created["expires_at"] is not None

    listed = output(await faas(*base, "token", "list"))
    assert [t["name"] for t in listed] == ["admin", "ci"] and all("token" not in t for t in listed)

    # --token and FAAS_TOKEN come before the file: an invoke token may not list runtimes.
    for how in ({"args": ("--token", created["token"])}, {"env": {"FAAS_TOKEN": created["token"]}}):
        result = await faas(*base, *how.get("args", ()), "runtime", "list", env=how.get("env"))
        assert result.exit_code == 4 and "HTTP 403" in result.output and "role invoke" in result.output

    assert output(await faas(*base, "token", "revoke", "ci")) == {"revoked": "ci"}
    result = await faas(*base, "--token", created["token"], "runtime", "list")
    assert result.exit_code == 4 and "HTTP 401" in result.output and "--token / FAAS_TOKEN" in result.output

    result = await faas(*base, "token", "create", "--role", "read", "--expires", "soon")
    assert result.exit_code == 2 and "--expires" in result.output
