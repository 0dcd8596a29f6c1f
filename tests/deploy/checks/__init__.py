"""The checks of the deploy test, in the order they run: those that change nothing first, then
the playbook re-runs, then the faults (each leaves the deployment whole again)."""

from collections.abc import Callable, Coroutine
from typing import Any

from tests.deploy.checks.cluster import refusals, replicas
from tests.deploy.checks.faults import agent_host_killed, nats_host_killed, store_host_restarted
from tests.deploy.checks.flow import dice_flow
from tests.deploy.checks.rerun import rerun
from tests.deploy.checks.throughput import throughput
from tests.deploy.deployment import Deployment, Result

Check = Callable[[Deployment], Coroutine[Any, Any, Result]]

CHECKS: list[tuple[int, str, Check]] = [
    (1, "dice flow through each gateway, calls on both agent hosts", dice_flow),
    (2, "every stream, KV bucket and the object store at 3 replicas", replicas),
    (8, "calls/s: two gateways and two agent hosts against one host", throughput),
    (7, "NATS refuses clients without credentials or without TLS", refusals),
    (6, "playbook re-run changes nothing; a code change restarts only the services", rerun),
    (3, "a NATS host killed under load: every accepted call DONE", nats_host_killed),
    (4, "an agent host killed under load: its calls done elsewhere", agent_host_killed),
    (5, "the store host restarted under load: records catch up", store_host_restarted),
]
