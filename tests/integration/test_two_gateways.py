"""Two gateways on one nats-server serve at once, as behind a load balancer: started together
(the layout and the admin token made by both at the same moment, with one token file), calls
go through either, and the callbacks of all of them are delivered exactly once (the
gateways share one durable callbacks consumer). The test plays the node agent."""

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
from nats.aio.client import Client

from common.natsserver import NatsServer
from gateway.app import Gateway
from gateway.callbacks import CONSUMER
from schemas import Layout, Role
from tests.integration.test_gateway_callbacks import FAST, callback_event, receiving
from tests.integration.test_gateway_support import (
    FakeAgent,
    bearer,
    register_function,
    register_runtime,
    settings_for,
    wait_until,
)
from tests.unit.test_gateway_callback_post import Receiver

CALLS = 12
DEADLINE_S = 20.0


async def test_two_gateways_share_the_work_and_deliver_each_callback_once(
    nats_server: NatsServer, layout: Layout, nc: Client, tmp_path: Path
) -> None:
    token_file = tmp_path / "admin.token"
    gateways = [Gateway(settings_for(nats_server, layout, admin_token_file=token_file, **FAST)) for _ in range(2)]
    receiver = Receiver([200])
    try:
        # Both make the layout and check the admin token file at the same moment.
        await asyncio.gather(*(gw.start() for gw in gateways))
        token = token_file.read_text().strip()
        sessions = [aiohttp.ClientSession(base_url=gw.url, headers=bearer(token)) for gw in gateways]
        async with receiving(receiver) as url:
            for http in sessions:  # the one token file holds a token both gateways take
                async with http.get("/v1/tokens") as r:
                    assert r.status == 200, await r.text()
                    admins = [t for t in await r.json() if t["role"] == Role.ADMIN.value]
                    assert 1 <= len(admins) <= 2  # each start made at most one
            await register_runtime(sessions[0])
            await register_function(sessions[1])  # seen by the first gateway's mirror too
            ids = []
            for n in range(CALLS):
                async with sessions[n % 2].post(
                    "/v1/functions/dice/invoke?async=true", json={"roll": "1d6"}, params={"callback_url": url}
                ) as r:
                    assert r.status == 202, await r.text()
                    ids.append((await r.json())["id"])
            agent = FakeAgent(nc, layout)
            for _ in range(CALLS):
                inv, number = await agent.pull()
                await agent.finish(inv, number, result=[4], callback_url=inv.callback_url)
            for call_id in ids:
                assert (await callback_event(nc, layout, call_id, DEADLINE_S)).outcome.delivered

            async def settled() -> bool:  # nothing more for any gateway to deliver
                info = await nc.jetstream().consumer_info(layout.events_stream, CONSUMER)
                return (info.num_pending, info.num_ack_pending) == (0, 0)

            await wait_until(settled, DEADLINE_S, "the callbacks consumer to be done")
        posted = Counter(headers["X-Faas-Call-Id"] for headers, _ in receiver.requests)
        assert posted == dict.fromkeys(ids, 1)
        for http in sessions:
            await http.close()
    finally:
        for gw in gateways:
            await gw.stop()
        for gw in gateways:
            assert not gw.tasks.failed.is_set(), gw.tasks.failure
