"""The embedded nats-server's process settings."""

from pathlib import Path

import pytest

from common.natsserver import NatsServer, embedded_procs


def _environ(pid: int | None) -> list[str]:
    assert pid is not None
    return Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")


def test_the_embedded_server_gets_a_quarter_of_the_cores_and_at_least_one() -> None:
    assert [embedded_procs(n) for n in (1, 2, 3, 4, 8, 16)] == [1, 1, 1, 1, 2, 4]


async def test_gomaxprocs_defaults_to_the_embedded_share_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    async with NatsServer(tmp_path / "a") as server:
        assert f"GOMAXPROCS={embedded_procs()}" in _environ(server.pid)
    monkeypatch.setenv("GOMAXPROCS", "3")
    async with NatsServer(tmp_path / "b") as server:
        assert "GOMAXPROCS=3" in _environ(server.pid)
