"""The streams' limits through a real gateway on a real nats-server: the gateway applies its
configured limits to streams that exist already, and a full invoke stream (discard NEW) is a
503 ``queue_full`` with Retry-After, never a call dropped once the gateway said it was queued."""

import logging

import pytest
from nats.aio.client import Client

from common.jetstream import LayoutLimits, ensure_layout
from common.natsserver import NatsServer
from schemas import Invocation, Layout, decode
from tests.integration.test_gateway_support import (
    FakeAgent,
    register_function,
    register_runtime,
    running_gateway,
    wait_until,
)

MiB = 1 << 20


async def test_the_gateway_applies_its_limits_to_existing_streams(
    nats_server: NatsServer, layout: Layout, nc: Client
) -> None:
    js = nc.jetstream()
    # As an older gateway made them: the events stream bounded by age only.
    await ensure_layout(js, layout, LayoutLimits(events_max_bytes=-1, invoke_max_bytes=-1))
    limits = {
        "events_max_age_s": 3600.0,
        "events_max_bytes": 2 * MiB,
        "invoke_max_bytes": MiB,
        "invoke_max_msgs": 1000,
    }
    async with running_gateway(nats_server, layout, **limits):
        events = (await js.stream_info(layout.events_stream)).config
        invoke = (await js.stream_info(layout.invoke_stream)).config
    assert (events.max_age, events.max_bytes) == (3600.0, 2 * MiB)
    assert (invoke.max_bytes, invoke.max_msgs, invoke.max_age) == (MiB, 1000, 0.0)


@pytest.mark.parametrize(
    ("limits", "params", "why"),
    [
        ({"invoke_max_msgs": 2}, {}, "maximum messages exceeded"),
        ({"invoke_max_bytes": 4096}, {"pad": "x" * 1500}, "maximum bytes exceeded"),
    ],
)
async def test_a_full_invoke_queue_is_a_503_and_keeps_what_it_accepted(
    nats_server: NatsServer,
    layout: Layout,
    nc: Client,
    caplog: pytest.LogCaptureFixture,
    limits: dict[str, int],
    params: dict[str, str],
    why: str,
) -> None:
    js = nc.jetstream()
    async with running_gateway(nats_server, layout, queue_full_retry_after_s=7, **limits) as (_, http):
        await register_runtime(http)
        await register_function(http)
        accepted = []
        for _ in range(2):
            async with http.post("/v1/functions/dice/invoke?async=true", json=params) as r:
                assert r.status == 202, await r.text()
                accepted.append((await r.json())["id"])
        with caplog.at_level(logging.WARNING, logger="gateway.queueing"):
            async with http.post("/v1/functions/dice/invoke?async=true", json=params) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "7"
                error = (await r.json())["error"]
        assert error["code"] == "queue_full" and "queue full" in error["message"] and why in error["message"]
        assert [
            rec.__dict__["fields"]["why"] for rec in caplog.records if rec.getMessage() == "invoke.refused_full"
        ] == [why]

        # What was accepted is all there, in order.
        info = await js.stream_info(layout.invoke_stream)
        assert info.state.messages == 2
        stored = [
            decode(Invocation, (await js.get_msg(layout.invoke_stream, seq)).data or b"").id
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
        assert stored == accepted

        # Once an agent takes a call there is room again.
        inv, _ = await FakeAgent(nc, layout).pull()
        assert inv.id == accepted[0]

        async def taken() -> bool:
            return (await js.stream_info(layout.invoke_stream)).state.messages == 1

        await wait_until(taken, 5, "the ack to remove the call")
        async with http.post("/v1/functions/dice/invoke?async=true", json=params) as r:
            assert r.status == 202, await r.text()
