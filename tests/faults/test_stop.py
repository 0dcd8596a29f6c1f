"""How `faas up` ends: a terminal's Ctrl-C stops everything in order, and a SIGKILLed
`faas up` leaves nothing running."""

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import aiodocker
import pytest

from bench.upproc import SERVICES, UpProcess, gone
from tests.e2e.platform_harness import poll_json
from tests.faults.load import deploy

pytestmark = pytest.mark.e2e


async def test_ctrl_c_in_a_terminal_stops_everything_in_order(docker_ready: None, tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data")
    try:
        await up.start()
        children = up.children()
        assert sorted(children) == sorted(SERVICES)
        for proc in children.values():  # none of them is in the terminal's process group
            assert os.getpgid(proc.pid) != up.pid and os.getsid(proc.pid) != os.getsid(up.pid)
        started = time.monotonic()
        up.ctrl_c()
        code = await up.wait_exit(60)
        took = time.monotonic() - started
        print(f"\n[faults] Ctrl-C: faas up exited {code} after {took:.2f}s")
        assert code == 0, up.log()[-4000:]
        assert not [p for p in children.values() if p.alive()], "children outlived faas up"
        # about a wedge, not speed: the services spinning on a stopped NATS took 20 s+
        assert took < 20, up.log()[-4000:]
        log = up.log()
        order = re.findall(r"platform\.child_stopped service=([\w-]+)", log)
        assert order == ["node-agent", "gateway", "store", "nats-server"], log[-4000:]
        # each service stopped when faas up asked it to, not all at once on the terminal's signal
        # (a service still starting, the agent say, is stopped from its start: it says so)
        stopped = r"(?:lifecycle\.stopped|service\.stopped_while_starting) service=(\S+)"
        services = [s.split(":")[0] for s in re.findall(stopped, log)]
        assert services == ["node-agent", "gateway", "store"], log[-4000:]
        # NATS stops last: every service drained its connection, none lost NATS while stopping
        assert not re.search(r"nats\.(error|drain_failed)|Connect call failed", log), log[-4000:]
        assert "platform.stopped" in log
    finally:
        await up.close()


async def test_a_killed_faas_up_takes_its_children_with_it(docker_ready: None, tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data")
    try:
        await up.start()
        children = list(up.children().values())
        assert len(children) == len(SERVICES)
        os.kill(up.pid, signal.SIGKILL)
        assert await up.wait_exit(10) == -signal.SIGKILL
        # each gets SIGTERM (PR_SET_PDEATHSIG) and stops as it would on Ctrl-C, all at once;
        # the agent's grace (30 s) bounds it
        took = await gone(children, timeout=60)
        print(f"\n[faults] faas up SIGKILLed: its {len(children)} children gone {took:.2f}s later")
    finally:
        await up.close()


async def test_a_second_ctrl_c_does_not_wait_for_running_calls(docker: aiodocker.Docker, tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data")
    try:
        await up.start()
        async with up.session() as http:
            await deploy(http, "sleeper")
            async with http.post("/v1/functions/sleeper/invoke?async=true", json={"sleep": 60}) as resp:
                assert resp.status == 202, await resp.text()
                call = await resp.json()
            await poll_json(http, f"/v1/calls/{call['id']}", lambda s, b: b.get("status") == "RUNNING")
        children = list(up.children().values())
        up.ctrl_c()
        await asyncio.sleep(1.0)
        assert up.proc is not None and up.proc.returncode is None  # the agent waits for its call
        started = time.monotonic()
        up.ctrl_c()
        code = await up.wait_exit(20)
        print(f"\n[faults] a second Ctrl-C: faas up exited {code} {time.monotonic() - started:.2f}s later")
        assert code == 0
        assert not [p for p in children if p.alive()]
        log = up.log()
        assert "platform.hurry" in log and re.search(r"platform\.kill service=node-agent .*hurried=True", log), log
    finally:
        await up.close()
        # the killed agent's containers: the next start of its node would remove them
        node = up.env["FAAS_AGENT_NODE_ID"]
        for container in await docker.containers.list(all=True, filters={"label": [f"faas.node={node}"]}):
            await container.delete(force=True)
