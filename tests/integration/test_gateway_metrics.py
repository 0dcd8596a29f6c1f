"""The gateway's ``GET /metrics`` against a real nats-server: who may read it, queue depth
per runtime and per node moving with real invocations and consumers, nodes by freshness,
and callback outcomes counted as deliveries end."""

from collections.abc import Callable

import aiohttp
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client.parser import text_string_to_metric_families

from common.natsserver import NatsServer
from schemas import Layout, NodeState, encode
from tests.integration.test_gateway_callbacks import FAST, callback_event, invoke_async, receiving
from tests.integration.test_gateway_support import (
    FakeAgent,
    bearer,
    issue_token,
    register_function,
    register_runtime,
    running_gateway,
)
from tests.integration.test_store_support import eventually
from tests.unit.test_gateway_callback_post import Receiver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RUNTIME = "pythonruntime"


async def scrape(http: aiohttp.ClientSession) -> Samples:
    async with http.get("/metrics") as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def until(http: aiohttp.ClientSession, holds: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``holds`` (the queue figures are cached for a second or two)."""

    async def check() -> Samples | None:
        s = await scrape(http)
        return s if holds(s) else None

    return await eventually(check)


def depth(runtime: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("faas_queue_depth", (("runtime", runtime),))


def in_flight(runtime: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("faas_queue_in_flight", (("runtime", runtime),))


async def test_metrics_need_a_token_with_the_read_right(nats_server: NatsServer, layout: Layout) -> None:
    async with running_gateway(nats_server, layout, callbacks=False) as (gw, http):
        invoke_token = await issue_token(http, "invoke")
        read_token = await issue_token(http, "read")
        async with aiohttp.ClientSession(base_url=gw.url) as anonymous:
            async with anonymous.get("/metrics") as r:
                assert r.status == 401
            async with anonymous.get("/metrics", headers=bearer(invoke_token)) as r:
                assert r.status == 403
            async with anonymous.get("/metrics", headers=bearer(read_token)) as r:
                assert r.status == 200
                assert "faas_nodes" in await r.text()


async def test_queue_depth_follows_invocations_and_the_runtimes_consumer(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    js = nc.jetstream()
    async with running_gateway(nats_server, layout, callbacks=False) as (_, http):
        await register_runtime(http)
        await register_function(http)
        assert (await scrape(http))[depth(RUNTIME)] == 0
        for _ in range(3):
            await invoke_async(http)
        # No agent has served the runtime yet: no consumer, the messages on its subject.
        s = await until(http, lambda s: s[depth(RUNTIME)] == 3)
        assert in_flight(RUNTIME) not in s

        # An agent's consumer appears; one call is delivered to it and not acked yet.
        consumer = layout.runtime_consumer(RUNTIME)
        config = ConsumerConfig(
            durable_name=consumer, filter_subject=layout.invoke_runtime(RUNTIME), ack_policy=AckPolicy.EXPLICIT
        )
        await js.add_consumer(layout.invoke_stream, config)
        sub = await js.pull_subscribe_bind(consumer, layout.invoke_stream)
        [msg] = await sub.fetch(1, timeout=5)
        await until(http, lambda s: s[depth(RUNTIME)] == 2 and s.get(in_flight(RUNTIME)) == 1)
        await msg.ack()
        await until(http, lambda s: s[depth(RUNTIME)] == 2 and s.get(in_flight(RUNTIME)) == 0)

        # A node with a heartbeat, and a call routed to it.
        nodes = await js.key_value(layout.nodes_bucket)
        await nodes.put("n1", encode(NodeState(node_id="n1", policy="adaptive", slots=4, free=4)))
        node_consumer = ConsumerConfig(
            durable_name=layout.node_consumer("n1"),
            filter_subject=layout.invoke_node("n1"),
            ack_policy=AckPolicy.EXPLICIT,
        )
        await js.add_consumer(layout.invoke_stream, node_consumer)
        await js.publish(layout.invoke_node("n1"), b"{}")
        s = await until(http, lambda s: s.get(("faas_node_queue_depth", (("node", "n1"),))) == 1)
        assert s[("faas_nodes", (("state", "fresh"),))] == 1
        assert s[("faas_nodes", (("state", "stale"),))] == 0
        await sub.unsubscribe()


async def test_callback_outcomes_are_counted(nats_server: NatsServer, layout: Layout, nc: Client) -> None:
    outcome = ("faas_callbacks_total", (("outcome", "delivered"),))
    async with running_gateway(nats_server, layout, **FAST) as (_, http):
        await register_runtime(http)
        await register_function(http)
        assert (await scrape(http))[outcome] == 0
        receiver = Receiver([200])
        async with receiving(receiver) as url:
            body = await invoke_async(http, params={"callback_url": url})
            agent = FakeAgent(nc, layout)
            inv, number = await agent.pull()
            await agent.finish(inv, number, result=[1], callback_url=inv.callback_url)
            await callback_event(nc, layout, body["id"])
        # Counted once the outcome is recorded (the event may be seen an instant before).
        s = await until(http, lambda s: s[outcome] == 1)
        assert s[("faas_callbacks_total", (("outcome", "failed"),))] == 0
