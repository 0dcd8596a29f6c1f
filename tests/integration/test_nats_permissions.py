"""The NATS users of common/natsauth.py on a real nats-server with the generated configuration:
each user is refused what it does not own (the server says so, and nothing happens), and
can do what it is for. The rest of the suite runs every service as its own user and fails on
any refusal (tests/conftest.py), which shows each one has what it needs."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.errors import NotFoundError

from common.natsauth import inbox_prefix, kv_stream
from common.natsserver import NatsServer
from node_agent.agent import NodeAgent
from node_agent.settings import AgentSettings
from schemas import REPLY_TO, CallRecord, CallStatus, Finished, Invocation, Layout, decode, decode_event, encode
from tests.fakes.container import Process
from tests.fakes.docker import FakeEngine
from tests.fakes.runtime import function_image
from tests.functions import PYTHON_IMAGE, python_runtime, register
from tests.integration.test_gateway_support import running_gateway
from tests.natsusers import service_settings

DENIAL_S = 5.0
DICE = {"main.py": "print(6)\n"}


class Probe:
    """A client of one user that keeps what the server refused it."""

    def __init__(self, nc: Client, errors: "asyncio.Queue[str]") -> None:
        self.nc = nc
        self.errors = errors
        self.js = nc.jetstream()
        # for requests that go unanswered (refused): no need to wait long for that
        self.js_refused = nc.jetstream(timeout=0.5)

    async def refused(self, what: str) -> None:
        """The server refused ``what`` (e.g. 'publish to "x"'): its -ERR reached the client."""
        async with asyncio.timeout(DENIAL_S):
            while True:
                error = await self.errors.get()
                if what.lower() in error.lower():
                    return

    async def publish_refused(self, subject: str, data: bytes = b"{}") -> None:
        await self.nc.publish(subject, data)
        await self.nc.flush()
        await self.refused(f'publish to "{subject}"')

    async def subscribe_refused(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        await self.refused(f'subscription to "{subject}"')

    async def api_refused(self, call: Awaitable[Any], subject: str) -> None:
        """A JetStream API request whose subject is refused: no answer, and the server says why."""
        with pytest.raises(nats.errors.TimeoutError):
            await call
        await self.refused(f'publish to "{subject}"')


@pytest.fixture
async def probe(nats_server: NatsServer, nc: Client) -> AsyncIterator[Callable[[str], Awaitable[Probe]]]:
    made: list[Client] = []

    async def connect(user: str) -> Probe:
        errors: asyncio.Queue[str] = asyncio.Queue()

        async def on_error(err: Exception) -> None:
            errors.put_nowait(str(err))

        client = await nats.connect(
            nats_server.url, error_cb=on_error, allow_reconnect=False, **nats_server.auth(user).connect_options()
        )
        made.append(client)
        return Probe(client, errors)

    yield connect
    for client in made:
        await client.close()


async def _tokens_bucket(nats_server: NatsServer, layout: Layout) -> None:
    """The tokens bucket as the gateway makes it, with one token record."""
    gateway = await nats.connect(nats_server.url, **nats_server.auth("gateway").connect_options())
    try:
        kv = await gateway.jetstream().create_key_value(KeyValueConfig(bucket=layout.tokens_bucket, history=1))
        await kv.put("t1", b'{"hash": "secret-hash"}')
        assert (await kv.get("t1")).value == b'{"hash": "secret-hash"}'
    finally:
        await gateway.close()


# --- agent ----------------------------------------------------------------------------------


@pytest.mark.nats_denials
async def test_the_agent_cannot_read_the_tokens_bucket(
    nats_server: NatsServer, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    await _tokens_bucket(nats_server, layout)
    agent = await probe("agent")
    stream = kv_stream(layout.tokens_bucket)
    await agent.api_refused(agent.js_refused.key_value(layout.tokens_bucket), f"$JS.API.STREAM.INFO.{stream}")
    subject = f"$JS.API.DIRECT.GET.{stream}.$KV.{layout.tokens_bucket}.t1"
    with pytest.raises(nats.errors.TimeoutError):
        await agent.nc.request(subject, b"", timeout=1.0)
    await agent.refused(f'publish to "{subject}"')
    await agent.api_refused(
        agent.js_refused.get_last_msg(stream, f"$KV.{layout.tokens_bucket}.t1"), f"$JS.API.STREAM.MSG.GET.{stream}"
    )
    await agent.subscribe_refused(f"$KV.{layout.tokens_bucket}.>")
    await agent.publish_refused(f"$KV.{layout.tokens_bucket}.t2")


@pytest.mark.nats_denials
async def test_the_agent_cannot_delete_purge_reconfigure_or_create_streams(
    nats_server: NatsServer, nc: Client, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    agent = await probe("agent")
    invoke = layout.invoke_stream
    await agent.api_refused(agent.js_refused.delete_stream(invoke), f"$JS.API.STREAM.DELETE.{invoke}")
    await agent.api_refused(
        agent.js_refused.purge_stream(layout.events_stream), f"$JS.API.STREAM.PURGE.{layout.events_stream}"
    )
    info = await nc.jetstream().stream_info(invoke)
    config = StreamConfig(name=invoke, subjects=info.config.subjects, max_msgs=1)
    await agent.api_refused(agent.js_refused.update_stream(config), f"$JS.API.STREAM.UPDATE.{invoke}")
    await agent.api_refused(
        agent.js_refused.add_stream(StreamConfig(name="AGENT_OWN", subjects=["agent.own.>"])),
        "$JS.API.STREAM.CREATE.AGENT_OWN",
    )
    # nothing happened
    after = await nc.jetstream().stream_info(invoke)
    assert after.config.max_msgs == info.config.max_msgs
    assert (await nc.jetstream().stream_info(layout.events_stream)).config.name == layout.events_stream


@pytest.mark.nats_denials
async def test_the_agent_publishes_and_reads_only_its_subjects(
    layout: Layout, nc: Client, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    agent = await probe("agent")
    p = layout.prefix
    for subject in (
        "anything",
        f"{p}.store.calls.get",
        f"{p}.call.dice",
        f"{p}.invoke.job.5",  # jobs come from the gateway
        f"{p}.invoke.node.n1",
        f"$KV.{layout.runtimes_bucket}.python",  # registrations too
        f"$O.{layout.artifacts_bucket}.M.x",
    ):
        await agent.publish_refused(subject)
    for subject in (f"{p}.events.>", f"{p}.invoke.rt.>", f"{inbox_prefix('gateway')}.>", f"{p}.store.>", ">"):
        await agent.subscribe_refused(subject)

    # what it is for: its heartbeat, the catalog, events, a reply to an inbox
    nodes = await agent.js.key_value(layout.nodes_bucket)
    await nodes.put("n1", b"{}")
    assert (await nodes.get("n1")).value == b"{}"
    await agent.js.key_value(layout.runtimes_bucket)
    ack = await agent.js.publish(layout.event("c1", "started"), b"{}", stream=layout.events_stream)
    assert ack.seq >= 1
    sub = await nc.subscribe("_INBOX.caller.1", max_msgs=1)
    await nc.flush()
    await agent.nc.publish("_INBOX.caller.1", b"finished")
    assert (await sub.next_msg(timeout=DENIAL_S)).data == b"finished"
    assert agent.errors.empty()


# --- invoker --------------------------------------------------------------------------------


@pytest.mark.nats_denials
async def test_the_invoker_may_only_publish_invocations_and_requests(
    layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    invoker = await probe("invoker")
    p = layout.prefix
    for subject in (
        f"{p}.events.c1.finished",  # forged events
        f"$KV.{layout.runtimes_bucket}.python",  # KV writes
        f"$KV.{layout.functions_bucket}.dice",
        f"$O.{layout.artifacts_bucket}.C.x",
        f"{p}.invoke.job.9",  # jobs go through the gateway (deploy role)
        f"{p}.invoke.node.n1",
        f"{p}.store.calls.list",  # records go through the gateway
        f"$JS.API.STREAM.INFO.{layout.events_stream}",
        f"$JS.API.STREAM.DELETE.{layout.invoke_stream}",
        "_INBOX.someone.1",
    ):
        await invoker.publish_refused(subject)
    for subject in (f"{p}.events.>", f"{p}.invoke.>", f"$KV.{layout.tokens_bucket}.>", f"{p}.call.*", ">"):
        await invoker.subscribe_refused(subject)
    await invoker.api_refused(
        invoker.js_refused.get_last_msg(layout.events_stream, layout.event("c1", "finished")),
        f"$JS.API.STREAM.MSG.GET.{layout.events_stream}",
    )


async def test_the_invoker_reads_no_reply_of_a_service(
    nc: Client, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    """An invoker may subscribe to ``_INBOX.>`` (the nats CLI's replies), but what JetStream or
    the store sends to a service's inbox never reaches it."""
    invoker = await probe("invoker")
    sub = await invoker.nc.subscribe("_INBOX.>")
    await invoker.nc.flush()
    for user in ("gateway", "agent", "store", "admin"):
        await nc.publish(f"{inbox_prefix(user)}.X.1", b"a service's reply")
    await nc.publish("_INBOX.mine.1", b"mine")  # after the others: messages from one client keep their order
    await nc.flush()
    first = await sub.next_msg(timeout=DENIAL_S)
    assert (first.subject, first.data) == ("_INBOX.mine.1", b"mine")


# --- store ----------------------------------------------------------------------------------


@pytest.mark.nats_denials
async def test_the_store_cannot_publish_invocations_events_or_read_tokens(
    nats_server: NatsServer, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    await _tokens_bucket(nats_server, layout)
    store = await probe("store")
    p = layout.prefix
    for subject in (f"{p}.invoke.rt.python", f"{p}.invoke.job.1", f"{p}.events.c1.finished", f"{p}.call.dice"):
        await store.publish_refused(subject)
    stream = kv_stream(layout.tokens_bucket)
    await store.api_refused(store.js_refused.key_value(layout.tokens_bucket), f"$JS.API.STREAM.INFO.{stream}")
    await store.api_refused(
        store.js_refused.delete_stream(layout.events_stream), f"$JS.API.STREAM.DELETE.{layout.events_stream}"
    )
    await store.subscribe_refused(f"{p}.events.>")


# --- gateway --------------------------------------------------------------------------------


@pytest.mark.nats_denials
async def test_the_gateway_makes_the_layout_but_cannot_delete_or_purge_a_stream(
    nats_server: NatsServer, nc: Client, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    await _tokens_bucket(nats_server, layout)  # the gateway creates it, reads and writes it
    gateway = await probe("gateway")
    for stream in (layout.invoke_stream, layout.events_stream, kv_stream(layout.tokens_bucket)):
        await gateway.api_refused(gateway.js_refused.delete_stream(stream), f"$JS.API.STREAM.DELETE.{stream}")
    await gateway.api_refused(
        gateway.js_refused.purge_stream(layout.invoke_stream), f"$JS.API.STREAM.PURGE.{layout.invoke_stream}"
    )
    await gateway.publish_refused("anything.else")
    await gateway.subscribe_refused(f"{layout.prefix}.events.>")  # it reads events through JetStream
    assert (await nc.jetstream().stream_info(layout.invoke_stream)).config.name == layout.invoke_stream


# --- authentication -------------------------------------------------------------------------


async def _connect_raw(server: NatsServer, options: dict[str, str]) -> bytes:
    """What the server answers a CONNECT with these credentials (nats-py leaves the socket of
    a refused connection open, so the protocol is spoken here)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        writer.write(b"CONNECT " + json.dumps({"verbose": False, **options}).encode() + b"\r\nPING\r\n")
        return await asyncio.wait_for(reader.readline(), DENIAL_S)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.nats_denials
async def test_a_wrong_password_or_no_user_is_refused(nats_server: NatsServer) -> None:
    assert nats_server.passwords is not None
    refused: list[dict[str, str]] = [{}, {"user": "agent", "pass": "guess"}, {"user": "nobody", "pass": "x"}]
    for options in refused:
        assert b"Authorization Violation" in await _connect_raw(nats_server, options)
    assert len([v for v in nats_server.violations if "authentication error" in v]) == len(refused)
    good = {"user": "agent", "pass": nats_server.passwords["agent"]}
    assert await _connect_raw(nats_server, good) == b"PONG\r\n"


def test_the_server_config_holds_hashes_not_passwords(nats_server: NatsServer) -> None:
    text = nats_server.config_file.read_text()
    assert nats_server.passwords is not None
    for password in nats_server.passwords.values():
        assert password not in text
    conf = json.loads(text.split("\n", 1)[1])
    users = {u["user"]: u for u in conf["authorization"]["users"]}
    assert set(users) == {"gateway", "agent", "store", "invoker", "admin"}
    assert all(u["password"].startswith("$2b$") for u in users.values())
    assert nats_server.config_file.stat().st_mode & 0o077 == 0


# --- the invoker's paths, end to end on an agent with a fake Docker -------------------------


async def _dice(p: Process) -> int:
    await p.out(b"[6, 6]\n")
    return 0


@pytest.fixture
async def agent(nats_server: NatsServer, nc: Client, layout: Layout, tmp_path: Path) -> AsyncIterator[NodeAgent]:
    await register(nc.jetstream(), layout, python_runtime(), "dice", DICE)
    settings = AgentSettings(
        **service_settings(nats_server, "agent"),
        prefix=layout.prefix,
        node_id="permnode",
        runtimes=["python"],
        handler_sockets=False,
        heartbeat_s=0.2,
        fetch_timeout_s=0.5,
        grace_s=1.0,
        metrics_port=0,
        cache_dir=tmp_path / "cache",
    )
    engine = FakeEngine(function_image(command=_dice), images={PYTHON_IMAGE})
    async with NodeAgent(settings, engine=engine) as node:  # type: ignore[arg-type]
        yield node


async def _finished(nc: Client, layout: Layout, call_id: str) -> Finished:
    js = nc.jetstream()
    async with asyncio.timeout(10):
        while True:
            try:
                msg = await js.get_last_msg(layout.events_stream, layout.event(call_id, "finished"))
                return decode(Finished, msg.data or b"")
            except NotFoundError:
                await asyncio.sleep(0.02)


async def test_nats_pub_with_a_reply_inbox_gets_the_finished_event(
    agent: NodeAgent, nc: Client, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    """``nats pub faas.invoke.rt.python --header Faas-Reply-To:_INBOX.me.1 '{...}'`` as the invoker."""
    invoker = await probe("invoker")
    sub = await invoker.nc.subscribe("_INBOX.me.1", max_msgs=1)
    inv = Invocation(id="by-invoker", function="dice")
    await invoker.nc.publish(layout.invoke_runtime("python"), encode(inv), headers={REPLY_TO: "_INBOX.me.1"})
    msg = await sub.next_msg(timeout=10)
    event = decode_event(msg.data)
    assert isinstance(event, Finished) and event.call_id == "by-invoker" and event.status == CallStatus.DONE
    assert event.result == [6, 6]
    assert invoker.errors.empty()


async def test_a_reply_to_outside_the_inboxes_is_ignored_by_the_agent(
    agent: NodeAgent, nc: Client, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    """The call runs and is recorded; the agent publishes nothing to the subject the publisher
    named (it does not even try: the server logs no violation, which the fixture checks)."""
    invoker = await probe("invoker")
    hijack = f"$JS.API.STREAM.DELETE.{layout.invoke_stream}"
    for n, reply_to in enumerate((hijack, f"{layout.prefix}.events.x.finished", "_INBOX.*")):
        inv = Invocation(id=f"hijack{n}", function="dice")
        await invoker.nc.publish(layout.invoke_runtime("python"), encode(inv), headers={REPLY_TO: reply_to})
        event = await _finished(nc, layout, f"hijack{n}")
        assert event.status == CallStatus.DONE
    assert (await nc.jetstream().stream_info(layout.invoke_stream)).config.name == layout.invoke_stream
    with pytest.raises(NotFoundError):
        await nc.jetstream().get_last_msg(layout.events_stream, f"{layout.prefix}.events.x.finished")


async def test_nats_req_through_the_gateways_call_endpoint(
    agent: NodeAgent, nats_server: NatsServer, layout: Layout, probe: Callable[[str], Awaitable[Probe]]
) -> None:
    """``nats req faas.call.dice '{}'`` as the invoker: the gateway answers its inbox."""
    invoker = await probe("invoker")
    async with running_gateway(nats_server, layout):
        reply = await invoker.nc.request(layout.call("dice"), b"{}", timeout=10)
    record = decode(CallRecord, reply.data)
    assert record.status == CallStatus.DONE and record.result == [6, 6]
    assert invoker.errors.empty()
