"""``/v1/jobs``: submit (message on the priority subject, secrets sealed and kept out of
events and answers), list/show from the store, cancel (queued, running, ended, unknown),
stored logs."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, NotFoundError

from common.natsserver import NatsServer
from common.sealing import SecretsKey, ensure_key_file
from schemas import (
    JobAccepted,
    JobFinished,
    JobMaxima,
    JobMessage,
    JobSecrets,
    JobStatus,
    Layout,
    LogEntry,
    LogPage,
    NodeState,
    decode,
    decode_job_event,
    encode,
)
from tests.integration.test_gateway_jobs_support import (
    T0,
    StoreState,
    fake_job_store,
    job_record,
    publish_job_finished,
)
from tests.integration.test_gateway_support import running_gateway
from tests.integration.test_store_support import eventually

SPEC: dict[str, Any] = {
    "name": "train",
    "description": "a training run",
    "priority": 7,
    "container": {
        "image": "registry.example/ml/train:1",
        "command": ["python3", "train.py"],
        "env": {"EPOCHS": "3"},
        "secret_env": {"WANDB_KEY": "wk-5e1f0c7b"},
        "registry_auth": {"username": "bot", "password": "s3cret-pw"},
    },
    "metadata": {"team": "ml"},
    "timeout_s": 600,
}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.key"
    ensure_key_file(path)
    return path


@pytest.fixture
async def http(
    nats_server: NatsServer, layout: Layout, nc: Client, key_file: Path
) -> AsyncIterator[aiohttp.ClientSession]:
    async with running_gateway(
        nats_server, layout, store_timeout_s=0.5, callbacks=False, secrets_key_file=key_file
    ) as (_, session):
        yield session


@pytest.fixture
async def store(nc: Client, layout: Layout) -> AsyncIterator[StoreState]:
    async with fake_job_store(nc, layout) as state:
        yield state


async def job_event(nc: Client, layout: Layout, job_id: str, kind: str) -> Any:
    msg = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, kind))
    return decode_job_event(msg.data or b"")


async def submit(http: aiohttp.ClientSession, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    async with http.post("/v1/jobs", json=spec) as r:
        assert r.status == 201, await r.text()
        assert r.headers["Location"].startswith("/v1/jobs/j")
        body: dict[str, Any] = await r.json()
        return body


async def test_submit_queues_the_job_by_priority_with_its_secrets_sealed(
    http: aiohttp.ClientSession, nc: Client, layout: Layout, key_file: Path
) -> None:
    body = await submit(http)
    job_id = body["id"]
    assert job_id.startswith("j") and len(job_id) == 33
    assert body["status"] == "QUEUED" and body["priority"] == 7 and body["name"] == "train"
    assert body["image"] == "registry.example/ml/train:1" and body["command"] == ["python3", "train.py"]
    assert body["env"] == {"EPOCHS": "3"} and body["metadata"] == {"team": "ml"}
    assert body["secret_env_names"] == ["WANDB_KEY"]
    assert "s3cret-pw" not in str(body) and "wk-5e1f0c7b" not in str(body) and "registry_auth" not in body

    # The message on the priority's subject: the number is its stream sequence; the secrets
    # are in it sealed, for the node (which pulls the image and starts the container with them).
    msg = await nc.jetstream().get_last_msg(layout.invoke_stream, layout.invoke_job(7))
    assert msg.seq == body["number"]
    assert msg.headers and msg.headers["Nats-Msg-Id"] == job_id
    assert b"s3cret" not in (msg.data or b"") and b"wk-5e1f0c7b" not in (msg.data or b"")
    queued = decode(JobMessage, msg.data or b"")
    assert queued.id == job_id and not queued.spec.container.has_secrets and queued.sealed
    opened = decode(JobSecrets, SecretsKey.load(key_file).open(queued.sealed))
    assert opened.job_id == job_id and opened.env == {"WANDB_KEY": "wk-5e1f0c7b"}
    assert opened.registry_auth == {"username": "bot", "password": "s3cret-pw"}

    accepted = await job_event(nc, layout, job_id, "job_accepted")
    assert isinstance(accepted, JobAccepted)
    assert accepted.number == body["number"] and not accepted.spec.container.has_secrets
    assert accepted.secret_env_names == ["WANDB_KEY"]
    raw = await nc.jetstream().get_last_msg(layout.events_stream, layout.event(job_id, "job_accepted"))
    assert b"s3cret" not in (raw.data or b"") and b"wk-5e1f0c7b" not in (raw.data or b"")


async def test_a_gateway_without_a_secrets_key_refuses_jobs_with_secrets(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    async with running_gateway(nats_server, layout, callbacks=False) as (_, http):
        for container in (
            {"image": "img", "secret_env": {"TOKEN": "t0k3n-value"}},
            {"image": "img", "registry_auth": {"username": "u", "password": "p4ssw0rd"}},
        ):
            async with http.post("/v1/jobs", json={"name": "j", "container": container}) as r:
                assert r.status == 400
                error = (await r.json())["error"]
                assert error["code"] == "secrets_unavailable" and "secrets_key_file" in error["message"]
        info = await nc.jetstream().stream_info(layout.invoke_stream)
        assert info.state.messages == 0  # nothing queued
        async with http.post("/v1/jobs", json={"name": "j", "container": {"image": "img"}}) as r:
            assert r.status == 201  # a job without secrets needs no key


async def test_invalid_specs_are_refused(http: aiohttp.ClientSession) -> None:
    for spec, expect in (
        ({"name": "x"}, "container"),
        ({**SPEC, "priority": 12}, "priority"),
        ({**SPEC, "name": "bad name"}, "name"),
        ({**SPEC, "surprise": 1}, "surprise"),
        ({**SPEC, "timeout_s": 0}, "timeout_s"),
        ({**SPEC, "container": {"image": "i", "secret_env": {"BAD NAME": "x"}}}, "secret_env.BAD NAME"),
        ({**SPEC, "container": {"image": "i", "env": {"K": "1"}, "secret_env": {"K": "v4lue"}}}, "also set in env: K"),
        ({**SPEC, "timeout_s": 8 * 24 * 3600}, "timeout_s"),
        ({**SPEC, "container": {**SPEC["container"], "memory_mb": 8}}, "memory_mb"),
        ({**SPEC, "container": {**SPEC["container"], "cpus": 0}}, "cpus"),
        ({**SPEC, "container": {**SPEC["container"], "user": "a b"}}, "user"),
    ):
        async with http.post("/v1/jobs", json=spec) as r:
            assert r.status == 400, spec
            assert expect in (await r.json())["error"]["message"]
    async with http.post("/v1/jobs", data=b"not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400


async def heartbeat(nc: Client, layout: Layout, node_id: str, **job_max: float) -> None:
    state = NodeState(node_id=node_id, policy="none", slots=1, free=1, job_max=JobMaxima(**job_max))
    await (await nc.jetstream().key_value(layout.nodes_bucket)).put(node_id, encode(state))


async def test_a_job_no_live_node_would_run_is_refused_at_once(
    http: aiohttp.ClientSession, nc: Client, layout: Layout
) -> None:
    def asking(**container: Any) -> dict[str, Any]:
        return {**SPEC, "timeout_s": container.pop("timeout_s", 600), "container": {**SPEC["container"], **container}}

    # No node has said its maxima yet: queued (the node that takes it decides).
    await submit(http, asking(memory_mb=100_000))
    await heartbeat(nc, layout, "small", memory_mb=1024, cpus=2, timeout_s=3600)
    await heartbeat(nc, layout, "big", memory_mb=8192, cpus=8, timeout_s=600)

    async def refused(spec: dict[str, Any]) -> str:
        async with http.post("/v1/jobs", json=spec) as r:
            assert r.status == 400, await r.text()
            error: dict[str, str] = (await r.json())["error"]
            assert error["code"] == "bad_request"
            return error["message"]

    async def until_refused(spec: dict[str, Any]) -> str | None:
        async with http.post("/v1/jobs", json=spec) as r:
            return (await r.json())["error"]["message"] if r.status == 400 else None

    # the gateway follows the nodes bucket: once it has seen both heartbeats
    message = await eventually(lambda: until_refused(asking(memory_mb=16384, cpus=16)), timeout=5)
    assert message == (
        "memory_mb 16384 is over every node's maximum (the largest: 8192); "
        "cpus 16 is over every node's maximum (the largest: 8)"
    )
    # each within some node's maxima, but no node's all at once
    assert await refused(asking(memory_mb=4096, timeout_s=1800)) == (
        "no node allows memory_mb, cpus and timeout_s as asked all at once"
    )
    await submit(http, asking(memory_mb=4096, cpus=4))  # "big" would
    await submit(http, asking(memory_mb=512, timeout_s=3600))  # "small" would


async def test_list_and_get_come_from_the_store(http: aiohttp.ClientSession, store: StoreState) -> None:
    store.jobs["ja"] = job_record("ja", JobStatus.RUNNING, number=1, node="node-1")
    store.jobs["jb"] = job_record("jb", JobStatus.FINISHED, number=2)
    async with http.get("/v1/jobs", params={"status": "RUNNING", "limit": "10"}) as r:
        assert r.status == 200
        page = await r.json()
    assert [j["id"] for j in page["items"]] == ["ja"] and page["next_cursor"] == "next"
    assert store.job_queries[-1].status == JobStatus.RUNNING and store.job_queries[-1].limit == 10
    async with http.get("/v1/jobs/ja") as r:
        assert r.status == 200
        assert (await r.json())["node"] == "node-1"
    async with http.get("/v1/jobs/nope") as r:
        assert r.status == 404
    async with http.get("/v1/jobs", params={"status": "SLEEPING"}) as r:
        assert r.status == 400


async def test_cancel_a_queued_job_records_it_at_once(
    http: aiohttp.ClientSession, store: StoreState, nc: Client, layout: Layout
) -> None:
    job_id = (await submit(http))["id"]
    store.jobs[job_id] = job_record(job_id, JobStatus.QUEUED)
    async with http.post(f"/v1/jobs/{job_id}/cancel") as r:
        assert r.status == 202, await r.text()
        assert await r.json() == {"id": job_id, "status": "CANCELLED", "cancel_requested": True}
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    assert (await kv.get(job_id)).value
    finished = await job_event(nc, layout, job_id, "job_finished")
    assert isinstance(finished, JobFinished) and finished.status == JobStatus.CANCELLED


async def test_cancel_a_running_job_asks_its_node(
    http: aiohttp.ClientSession, store: StoreState, nc: Client, layout: Layout
) -> None:
    store.jobs["jrun"] = job_record("jrun", JobStatus.RUNNING)
    async with http.post("/v1/jobs/jrun/cancel") as r:
        assert r.status == 202
        assert (await r.json())["status"] == "RUNNING"
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    assert (await kv.get("jrun")).value
    with pytest.raises(NotFoundError):  # the node publishes the final event once it stopped it
        await nc.jetstream().get_last_msg(layout.events_stream, layout.event("jrun", "job_finished"))


async def test_cancel_an_ended_or_unknown_job(
    http: aiohttp.ClientSession, store: StoreState, nc: Client, layout: Layout
) -> None:
    store.jobs["jdone"] = job_record("jdone", JobStatus.FINISHED)
    async with http.post("/v1/jobs/jdone/cancel") as r:
        assert r.status == 409
        assert (await r.json())["error"]["code"] == "conflict"
    for unknown in ("jnope", "bad.id"):
        async with http.post(f"/v1/jobs/{unknown}/cancel") as r:
            assert r.status == 404
    kv = await nc.jetstream().key_value(layout.cancels_bucket)
    for key in ("jdone", "jnope"):
        with pytest.raises(KeyNotFoundError):
            await kv.get(key)


async def test_cancel_falls_back_to_the_events_when_the_store_lags(
    http: aiohttp.ClientSession, store: StoreState, nc: Client, layout: Layout
) -> None:
    job_id = (await submit(http))["id"]  # the fake store never hears of it
    async with http.post(f"/v1/jobs/{job_id}/cancel") as r:
        assert r.status == 202
        assert (await r.json())["status"] == "CANCELLED"
    other = (await submit(http))["id"]
    await publish_job_finished(nc, layout, other, JobStatus.ERROR)
    async with http.post(f"/v1/jobs/{other}/cancel") as r:
        assert r.status == 409


async def test_stored_logs_as_json(http: aiohttp.ClientSession, store: StoreState) -> None:
    line = LogEntry(at=T0, stream="stdout", text="epoch 1")
    store.logs["ja"] = LogPage(id="ja", lines=[line], truncated=True)
    async with http.get("/v1/jobs/ja/logs") as r:
        assert r.status == 200
        assert await r.json() == {
            "id": "ja",
            "lines": [{"at": "2024-05-01T12:00:00Z", "stream": "stdout", "text": "epoch 1"}],
            "truncated": True,
        }
    async with http.get("/v1/calls/ja/logs") as r:
        assert r.status == 200
    async with http.get("/v1/jobs/jx/logs") as r:
        assert r.status == 404


async def test_nodes_lists_heartbeats_with_freshness(http: aiohttp.ClientSession, nc: Client, layout: Layout) -> None:
    kv = await nc.jetstream().key_value(layout.nodes_bucket)
    live = NodeState(node_id="n1", policy="adaptive", slots=4, free=3, warm_functions={"dice@2": 1})
    stale = NodeState(node_id="n0", policy="none", slots=2, free=2, at=T0)
    await kv.put("n1", encode(live))
    await kv.put("n0", encode(stale))

    async def both() -> list[dict[str, Any]] | None:
        async with http.get("/v1/nodes") as r:
            assert r.status == 200
            nodes: list[dict[str, Any]] = await r.json()
            return nodes if len(nodes) == 2 else None

    nodes = await eventually(both, timeout=5)
    assert [n["node_id"] for n in nodes] == ["n0", "n1"]
    assert (nodes[0]["fresh"], nodes[1]["fresh"]) == (False, True)
    assert nodes[1]["free"] == 3 and nodes[1]["warm_functions"] == {"dice@2": 1}
    assert nodes[0]["age_s"] > 60 and 0 <= nodes[1]["age_s"] < 5
