"""A job's secrets end to end on a real nats-server, with the real store (SQLite), gateway and
node agent (the fake Docker engine): the container gets ``secret_env`` and the pull gets the
registry credentials, while no secret value is in any answer, in any message of the invoke or
events streams, in the nats-server's files or in the database's files (WAL included)."""

import base64
import secrets
from pathlib import Path
from typing import Any

import aiohttp
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from common.natsserver import NatsServer
from common.sealing import ensure_key_file
from node_agent.agent import NodeAgent
from node_agent.settings import AgentSettings
from schemas import JobFinished, JobStatus, Layout, decode_job_event
from store import Store
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.integration.test_gateway_support import running_gateway, wait_until
from tests.integration.test_store_support import eventually, store_settings
from tests.natsusers import service_settings

IMAGE = "registry.example/team/private:1"


async def stream_bytes(nc: Client, stream: str) -> list[bytes]:
    """Every message still in ``stream``, raw: subject, headers and payload."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue  # deleted (acked work) or another test's gap
        found.append(msg.subject.encode() + repr(msg.headers).encode() + (msg.data or b""))
    return found


def forms(value: str) -> list[bytes]:
    """``value`` as bytes, and the middle of its base64 (standard and URL-safe) at each of the
    three alignments it can have in a longer encoded text: an encoding is not a hiding place."""
    raw = value.encode()
    found = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        core = encoded[(shift * 4 + 2) // 3 + 1 : -4]
        found += [core, core.replace(b"+", b"-").replace(b"/", b"_")]
    return found


def leaked(data: bytes, *values: str) -> bool:
    return any(form in data for value in values for form in forms(value))


def files_under(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


async def program(p: Process) -> int:
    """Says whether it got the variable, and (careless) prints it too: the log masks it."""
    await p.out(f"API_TOKEN set: {'API_TOKEN' in p.env}\n".encode())
    await p.out(f"careless: {p.env.get('API_TOKEN')}\n".encode())
    return 0


def agent_settings(server: NatsServer, layout: Layout, tmp_path: Path, key: Path | None) -> AgentSettings:
    return AgentSettings(
        **service_settings(server, "agent"),
        prefix=layout.prefix,
        node_id="sec-" + secrets.token_hex(3),
        handler_sockets=False,
        grace_s=2.0,
        metrics_port=0,
        cache_dir=tmp_path / "cache",
        secrets_key_file=key,
    )


async def job_finished(nc: Client, layout: Layout, job_id: str) -> JobFinished:
    async def finished() -> JobFinished | None:
        try:
            msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, "job_finished"))
        except NotFoundError:
            return None
        event = decode_job_event(msg.data or b"")
        return event if isinstance(event, JobFinished) else None

    return await eventually(finished, timeout=20)


async def test_secrets_reach_the_container_and_nothing_else(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    key = tmp_path / "secrets.key"
    ensure_key_file(key)
    engine = FakeEngine(program, pullable={IMAGE})
    db_dir, nats_dir = tmp_path / "db", nats_server.store_dir
    async with (
        Store(store_settings(nats_server, layout, tmp_path, linger_s=0)),
        running_gateway(nats_server, layout, callbacks=False, secrets_key_file=key) as (_, http),
    ):
        settings = agent_settings(nats_server, layout, tmp_path, key)
        secret, password = "sv-" + secrets.token_hex(12), "pw-" + secrets.token_hex(12)
        visible = "visible-" + secrets.token_hex(8)  # in env: where a secret would be, if it leaked
        await run_a_job_with_secrets(http, engine, nc, layout, settings, visible, secret, password)
        await no_file_holds_them(db_dir, nats_dir, visible, secret, password)


async def run_a_job_with_secrets(
    http: aiohttp.ClientSession,
    engine: FakeEngine,
    nc: Client,
    layout: Layout,
    settings: AgentSettings,
    visible: str,
    secret: str,
    password: str,
) -> None:
    spec: dict[str, Any] = {
        "name": "deploy",
        "container": {
            "image": IMAGE,
            "command": ["deploy"],
            "env": {"MARKER": visible},
            "secret_env": {"API_TOKEN": secret},
            "registry_auth": {"username": "bot", "password": password, "serveraddress": "registry.example"},
        },
    }
    async with http.post("/v1/jobs", json=spec) as r:
        assert r.status == 201, await r.text()
        answer = await r.text()
        job_id = (await r.json())["id"]

    # The queued job, raw, before an agent takes it (acked, it leaves the work queue).
    queued = await stream_bytes(nc, layout.invoke_stream)
    assert len(queued) == 1 and visible.encode() in queued[0] and b"sealed" in queued[0]
    assert not leaked(queued[0], secret, password)

    async with NodeAgent(settings, engine=engine):
        done = await job_finished(nc, layout, job_id)
    assert done.status == JobStatus.FINISHED, done.result.error

    # The container got the secret; the pull got the credentials.
    [created] = engine.created
    assert created.env == {"MARKER": visible, "API_TOKEN": secret}
    assert engine.pulls == [(IMAGE, {"username": "bot", "password": password, "serveraddress": "registry.example"})]

    # The answers: the record (once the store has it), the list, the logs. Names, never values.
    async def stored() -> dict[str, Any] | None:
        async with http.get(f"/v1/jobs/{job_id}") as r:
            body: dict[str, Any] = await r.json()
            return body if r.status == 200 and body["status"] == "FINISHED" else None

    record = await eventually(stored, timeout=20)
    assert record["secret_env_names"] == ["API_TOKEN"] and record["env"] == {"MARKER": visible}
    async with http.get("/v1/jobs") as r:
        listing = await r.text()
    async with http.get(f"/v1/jobs/{job_id}/logs") as r:
        logs = await r.json()
    assert [line["text"] for line in logs["lines"]] == ["API_TOKEN set: True", "careless: ***"]
    for text in (answer, str(record), listing, str(logs)):
        assert secret not in text and password not in text

    # Every message of the events stream, raw, and what is left in the invoke stream.
    events = await stream_bytes(nc, layout.events_stream)
    assert any(visible.encode() in m for m in events)  # the check can see the job
    for m in events + await stream_bytes(nc, layout.invoke_stream):
        assert not leaked(m, secret, password)


async def no_file_holds_them(db_dir: Path, nats_dir: Path, visible: str, secret: str, password: str) -> None:
    """The files: the database (its WAL too) and the nats-server's store, once the job's visible
    fields are in them (so that a secret written alongside would be there as well)."""

    async def written(root: Path) -> bool:
        return any(visible.encode() in data for data in files_under(root).values())

    await wait_until(lambda: written(db_dir), 10, "the job in the database files")
    await wait_until(lambda: written(nats_dir), 10, "the job in the nats-server files")
    names = {p.name for p in files_under(db_dir)}
    assert "faas.db" in names and "faas.db-wal" in names
    assert leaked(base64.b64encode(b"{" + secret.encode()), secret)  # the check sees an encoded secret
    for path, data in files_under(db_dir, nats_dir).items():
        assert not leaked(data, secret, password), path


async def test_an_agent_without_the_key_ends_the_job_with_a_clear_error(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    key = tmp_path / "secrets.key"
    ensure_key_file(key)
    engine = FakeEngine(images={"img"})
    spec = {"name": "j", "container": {"image": "img", "secret_env": {"T": "t-" + secrets.token_hex(8)}}}
    async with (
        running_gateway(nats_server, layout, callbacks=False, secrets_key_file=key) as (_, http),
        NodeAgent(agent_settings(nats_server, layout, tmp_path, None), engine=engine),
    ):
        async with http.post("/v1/jobs", json=spec) as r:
            assert r.status == 201, await r.text()
            job_id = (await r.json())["id"]
        done = await job_finished(nc, layout, job_id)
    assert done.status == JobStatus.ERROR
    assert done.result.error == "the job has sealed secrets but this node has no secrets key (secrets_key_file)"
    assert engine.created == [] and engine.pulls == []
