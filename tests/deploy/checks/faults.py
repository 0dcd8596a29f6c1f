"""Checks 3, 4, 5: a NATS host killed, an agent host killed, the store host restarted, each
under a stream of async invocations; every call accepted before, during and after ends DONE."""

import time
from collections import Counter

from tests.deploy.checks.load import settle, under_load
from tests.deploy.deployment import Deployment, Result

# Refusals (503) a gateway may answer with while NATS fails over: "a few seconds".
MAX_REFUSAL_S = 10.0


async def nats_host_killed(d: Deployment) -> Result:
    # The NATS server with nothing else on it (h1 in the layout), killed with no warning, and
    # started again 15 s later.
    victim = next(h for h in d.hosts.in_group("nats") if h.groups == ("nats",))

    def fault() -> None:
        d.hosts.kill(victim)
        time.sleep(15)
        d.hosts.start_again(victim)

    run = await under_load(d, "dice-h2", {"roll": "1d6"}, rate=4, seconds=30, fault_at=5, fault=fault)
    _, took, problems = await settle(d, run, 120)
    refusal = run.longest_refusal_s()
    if refusal > MAX_REFUSAL_S:
        problems.append(f"gateways refused for {refusal:.1f} s (> {MAX_REFUSAL_S:.0f} s)")
    figures = (
        f"killed {victim.name}; {len(run.sent)} sent {run.statuses()}, {len(run.accepted)} accepted, "
        f"longest refusal {refusal:.1f} s, all final {took:.0f} s after the load"
    )
    return Result(3, "", not problems, "; ".join([*problems, figures]))


async def agent_host_killed(d: Deployment) -> Result:
    victim = d.agents[-1]
    survivor = d.agents[0]

    def fault() -> None:
        d.hosts.kill(victim)

    # 2 s calls, so that the victim has calls running when it dies.
    run = await under_load(d, "dice-h2", {"roll": "1d6", "sleep": 2}, rate=3, seconds=15, fault_at=6, fault=fault)
    records, took, problems = await settle(d, run, 150)
    d.hosts.start_again(victim)
    nodes = Counter(r.get("node") for r in records.values())
    retried = sum(1 for r in records.values() if (r.get("attempts") or 1) > 1)
    if retried == 0:
        problems.append(f"no call was redelivered after {victim.name} died (did it run any?)")
    figures = (
        f"killed {victim.name}; {len(run.accepted)} accepted {run.statuses()}; ran on {dict(nodes)}; "
        f"{retried} redelivered to {survivor.node_id}; all final {took:.0f} s after the load"
    )
    return Result(4, "", not problems, "; ".join([*problems, figures]))


async def store_host_restarted(d: Deployment) -> Result:
    victim = d.hosts.in_group("store")[0]

    def fault() -> None:
        d.hosts.restart(victim)

    run = await under_load(d, "dice-h3", {"roll": "1d6"}, rate=3, seconds=20, fault_at=4, fault=fault)
    _, took, problems = await settle(d, run, 120)
    figures = (
        f"restarted {victim.name} ({run.fault_s:.0f} s down); {len(run.sent)} sent {run.statuses()}; "
        f"{len(run.accepted)} accepted, all recorded DONE {took:.0f} s after the load"
    )
    return Result(5, "", not problems, "; ".join([*problems, figures]))
