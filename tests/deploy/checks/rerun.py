"""Check 6: the playbook run again changes nothing; after a code change it restarts the Python
services (whose code it is) and no NATS server (whose configuration did not change).

A restart is seen in systemd's ``InvocationID`` of each unit, read before and after a run.
"""

import asyncio

from tests.deploy.deployment import Deployment, Result
from tests.deploy.operator import run_playbook

UNITS = {"nats": "faas-nats", "store": "faas-store", "gateway": "faas-gateway", "agents": "faas-agent"}


def _invocations(d: Deployment) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for host in d.hosts.layout:
        for unit in (UNITS[g] for g in host.groups):
            found[(host.name, unit)] = d.hosts.exec(host, "systemctl", "show", "-p", "InvocationID", "--value", unit)
    return found


def _restarted(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
    return {key for key, value in after.items() if before.get(key) != value}


async def rerun(d: Deployment) -> Result:
    return await asyncio.to_thread(_rerun, d)


def _rerun(d: Deployment) -> Result:
    problems, figures = [], []
    log = d.work / "ansible.log"
    before = _invocations(d)
    second = run_playbook(d.inventory, log)
    changed = {h: n for h, n in second.changed().items() if n}
    if changed or _restarted(before, _invocations(d)):
        problems.append(f"second run changed {changed}: {second.changed_tasks()[:6]}")
    figures.append(f"second run {second.seconds:.0f} s, changed=0 on {len(second.recap) - len(changed)} hosts")

    # A code change: one line in the shipped source (the run's copy of the checkout).
    marker = d.source / "node_agent" / "__init__.py"
    marker.write_text(marker.read_text() + "# deploy-test: a code change\n")
    before = _invocations(d)
    third = run_playbook(d.inventory, log)
    restarted = _restarted(before, _invocations(d))
    python_units = {key for key in before if key[1] != "faas-nats"}
    nats_restarted = {key for key in restarted if key[1] == "faas-nats"}
    if nats_restarted:
        problems.append(f"a code change restarted NATS: {sorted(nats_restarted)}")
    if python_units - restarted:
        problems.append(f"not restarted after a code change: {sorted(python_units - restarted)}")
    figures.append(
        f"after a code change: {third.seconds:.0f} s, restarted {len(restarted)} services "
        f"({', '.join(sorted(f'{h}:{u}' for h, u in restarted))}), NATS servers untouched"
    )
    return Result(6, "", not problems, "; ".join(problems + figures))
