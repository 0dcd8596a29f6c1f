"""Checks 3, 4, 5: a NATS host killed, an agent host killed, the store host restarted, each
under a stream of async invocations; every call accepted before, during and after ends DONE."""

import asyncio
from collections import Counter
from datetime import UTC, datetime

from tests.deploy.checks.load import settle, under_load
from tests.deploy.deployment import Deployment, Result
from tests.deploy.hosts import Host

# Refusals (503) a gateway may answer with while NATS fails over: "a few seconds".
MAX_REFUSAL_S = 10.0


async def nats_host_killed(d: Deployment) -> Result:
    # The server that leads FAAS_INVOKE (where every call is accepted): killed with no warning,
    # started again 15 s later. Its gateway, if it has one, gets no load, as a load balancer
    # whose health check fails would send it none.
    async with d.nats_admin() as nc:
        info = await nc.jetstream().stream_info("FAAS_INVOKE")
    leader = info.cluster.leader if info.cluster else None
    victim = next((h for h in d.hosts.in_group("nats") if h.name == leader), d.hosts.in_group("nats")[0])
    gateways = [g for g in d.gateways if g.name != victim.name]

    async def fault() -> None:
        await asyncio.to_thread(d.hosts.kill, victim)
        await asyncio.sleep(15)
        await asyncio.to_thread(d.hosts.start_again, victim)

    run = await under_load(
        d, "dice-h2", {"roll": "1d6"}, rate=4, seconds=30, fault_at=5, fault=fault, gateways=gateways
    )
    _, took, problems = await settle(d, run, 120, gateway=gateways[0])
    refusal = run.longest_refusal_s()
    if run.unexpected():
        problems.append(f"answers neither 202 nor 503: {run.unexpected()}")
    if refusal > MAX_REFUSAL_S:
        problems.append(f"gateways refused for {refusal:.1f} s (> {MAX_REFUSAL_S:.0f} s)")
    figures = (
        f"killed {victim.name} (FAAS_INVOKE leader: {leader}); load through {[g.name for g in gateways]}; "
        f"{len(run.sent)} sent {run.statuses()}, {len(run.accepted)} accepted, "
        f"longest refusal {refusal:.1f} s, all final {took:.0f} s after the load"
    )
    return Result(3, "", not problems, "; ".join([*problems, figures]))


async def agent_host_killed(d: Deployment) -> Result:
    killed: list[Host] = []
    running_there: list[str] = []
    kill_at: list[datetime] = []

    async def fault() -> None:
        # The agent host running the most calls right now (the records say where they run).
        running: dict[str, list[str]] = {}
        async with d.http(d.gateways[0], timeout_s=10) as http:
            for _ in range(20):
                async with http.get("/v1/calls?status=RUNNING&limit=200") as resp:
                    running = {}
                    for c in (await resp.json()).get("items", []):
                        running.setdefault(c.get("node"), []).append(c["id"])
                if any(running.get(a.node_id) for a in d.agents):
                    break
                await asyncio.sleep(0.5)
        victim = max(d.agents, key=lambda a: len(running.get(a.node_id, [])))
        killed.append(victim)
        running_there.extend(running.get(victim.node_id, []))
        await asyncio.to_thread(d.hosts.kill, victim)
        # when the kill is done: a call the host finished while `docker kill` ran is not lost
        kill_at.append(datetime.now(UTC))

    # 3 s calls, so that the victim has calls running when it dies.
    run = await under_load(d, "dice-h2", {"roll": "1d6", "sleep": 3}, rate=3, seconds=15, fault_at=5, fault=fault)
    records, took, problems = await settle(d, run, 150)
    victim = killed[0]
    await asyncio.to_thread(d.hosts.start_again, victim)
    nodes = Counter(r.get("node") for r in records.values())
    moved = [i for i in running_there if records.get(i, {}).get("node") not in (None, victim.node_id)]
    # Seen running there, but it finished before the host died (the store's list lags a little).
    ended_before = [i for i in running_there if i not in moved and _finished_before(records.get(i, {}), kill_at[0])]
    attempts = Counter(records.get(i, {}).get("attempts") for i in running_there)
    if not running_there:
        problems.append(f"no call seen running on {victim.name} when it was killed")
    elif len(moved) + len(ended_before) != len(running_there):
        problems.append(
            f"of {len(running_there)} calls running on {victim.name}, {len(moved)} ended elsewhere, "
            f"{len(ended_before)} before the kill"
        )
    if run.unexpected():
        problems.append(f"answers neither 202 nor 503: {run.unexpected()}")
    figures = (
        f"killed {victim.name} with {len(running_there)} calls running, {len(moved)} of them DONE on the other host "
        f"({len(ended_before)} had ended before the kill) "
        f"(attempts {dict(attempts)}); {len(run.accepted)} accepted {run.statuses()}, final on {dict(nodes)}; "
        f"all final {took:.0f} s after the load"
    )
    return Result(4, "", not problems, "; ".join([*problems, figures]))


def _finished_before(record: dict[str, object], at: datetime) -> bool:
    finished = record.get("finished_at")
    if record.get("status") != "DONE" or not isinstance(finished, str):
        return False
    when = datetime.fromisoformat(finished)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) < at


async def store_host_restarted(d: Deployment) -> Result:
    victim = d.hosts.in_group("store")[0]

    async def fault() -> None:
        await asyncio.to_thread(d.hosts.restart, victim)

    run = await under_load(d, "dice-h3", {"roll": "1d6"}, rate=3, seconds=20, fault_at=4, fault=fault)
    _, took, problems = await settle(d, run, 120)
    if run.unexpected():
        problems.append(f"answers neither 202 nor 503: {run.unexpected()}")
    figures = (
        f"restarted {victim.name} ({run.fault_s:.0f} s down); {len(run.sent)} sent {run.statuses()}; "
        f"{len(run.accepted)} accepted, all recorded DONE {took:.0f} s after the load"
    )
    return Result(5, "", not problems, "; ".join([*problems, figures]))
