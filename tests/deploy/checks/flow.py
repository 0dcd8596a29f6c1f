"""Check 1: the dice flow through each gateway, with its own admin token; calls on both agents."""

import asyncio
import time
from collections import Counter

from tests.deploy.deployment import Deployment, Result, get_call, invoke_async, register_dice, wait_done

BURST_EACH = 12  # calls through each gateway at once


async def dice_flow(d: Deployment) -> Result:
    figures, problems = [], []
    for gw in d.gateways:
        async with d.http(gw) as http:
            runtime, function = f"py-{gw.name}", f"dice-{gw.name}"
            await register_dice(http, runtime, function)
            t0 = time.monotonic()
            async with http.post(f"/v1/functions/{function}/invoke", json={"roll": "4d6"}) as resp:
                sync = await resp.json()
            sync_ms = (time.monotonic() - t0) * 1000
            if resp.status != 200 or sync.get("status") != "DONE" or len(sync.get("result") or []) != 4:
                problems.append(f"{gw.name} sync: {resp.status} {sync}")
                continue
            status, accepted = await invoke_async(http, function, {"roll": "2d6"})
            if status != 202:
                problems.append(f"{gw.name} async: {status} {accepted}")
                continue
            records, _ = await wait_done(http, [accepted["id"]], 60)
            record = records.get(accepted["id"], {})
            if record.get("status") != "DONE" or len(record.get("result") or []) != 2 or not record.get("node"):
                problems.append(f"{gw.name} async record: {record}")
            async with http.get(f"/v1/calls/{accepted['id']}/logs") as resp:
                logs = await resp.json()
            if not any("rolling" in line.get("text", "") for line in logs.get("lines", [])):
                problems.append(f"{gw.name} logs: {logs}")
            first = await get_call(http, sync["id"])
            on = (first or {}).get("node")
            figures.append(f"{gw.name}: sync {sync_ms:.0f} ms on {on}, async on {record.get('node')}")

    # A burst through both gateways at once, 1 s calls: more than one agent's slots. Each
    # gateway sends a node at most the free slots its heartbeat showed (gateway/routing.py),
    # but the gateways do not share those claims: two of them may send one warm node twice
    # its 8 slots. 12 calls each leave at least 4 each that no gateway sends that node: to
    # the shared subject, which an idle host pulls at once.
    async def burst(gw_index: int) -> list[str]:
        gw = d.gateways[gw_index % len(d.gateways)]
        async with d.http(gw) as http:
            sent = await asyncio.gather(
                *(invoke_async(http, f"dice-{gw.name}", {"roll": "1d6", "sleep": 1}) for _ in range(BURST_EACH))
            )
        return [body["id"] for status, body in sent if status == 202]

    ids = [i for group in await asyncio.gather(*(burst(n) for n in range(len(d.gateways)))) for i in group]
    async with d.http(d.gateways[0]) as http:
        records, took = await wait_done(http, ids, 120)
    nodes = Counter(r.get("node") for r in records.values() if r.get("status") == "DONE")
    want = {a.node_id for a in d.agents}
    if len(ids) != BURST_EACH * len(d.gateways) or sum(nodes.values()) != len(ids):
        problems.append(f"burst: {len(ids)} accepted, {sum(nodes.values())} DONE")
    if set(nodes) != want:
        problems.append(f"burst ran on {dict(nodes)}, not on every agent {sorted(want)}")
    figures.append(f"burst {len(ids)} calls DONE in {took:.1f} s on {dict(nodes)}")
    return Result(1, "", not problems, "; ".join(problems + figures))
