"""SIGKILL each process `faas up` runs, mid-load of async and sync calls: `faas up` starts it
again by itself, the platform accepts calls again within seconds, and every call that was
answered 2xx is recorded DONE exactly once.

One `faas up` for the module (policy adaptive, its default), one function per target so
that each test checks its own calls. A sync caller whose gateway died gets a connection
error: that call was not accepted, and is not counted."""

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator

import pytest

from bench.upproc import SERVICES, UpProcess
from faas_cli.up import SERVICE_MODULES
from tests.faults.load import all_done_once, deploy, run_load, until_accepting

pytestmark = pytest.mark.e2e

# The redelivery delays of a call whose agent died and of the events a store had not
# committed (30 s by default): short, so that the test sees them come back quickly.
FAST_REDELIVERY = {"FAAS_AGENT_ACK_WAIT_S": "5", "FAAS_STORE_ACK_WAIT_S": "5"}


@pytest.fixture(scope="module")
async def up(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UpProcess]:
    platform = UpProcess(tmp_path_factory.mktemp("faults") / "data", env=FAST_REDELIVERY)
    try:
        await platform.start()
        yield platform
    finally:
        await platform.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target", SERVICES)
async def test_a_sigkilled_process_comes_back_and_no_accepted_call_is_lost(up: UpProcess, target: str) -> None:
    fn = f"tiny-{target}"
    async with up.session() as http:
        await deploy(http, fn)
    await until_accepting(up.url, up.headers, fn)  # warm: the fault hits a running platform

    stop = asyncio.Event()
    load = asyncio.create_task(run_load(up.url, up.headers, fn, stop), name="load")
    await asyncio.sleep(2.0)
    victim = up.children()[target]
    os.kill(victim.pid, signal.SIGKILL)
    recovery_s = await until_accepting(up.url, up.headers, fn, timeout=60)
    await asyncio.sleep(1.0)  # the load goes on against the restarted process
    stop.set()
    result = await load

    started = time.monotonic()
    async with up.session() as http:
        await all_done_once(http, fn, result.accepted)
    print(
        f"\n[faults] SIGKILL {target}: accepting calls again {recovery_s:.2f}s later; accepted "
        f"{result.count('async')} async + {result.count('sync')} sync, all DONE once "
        f"({time.monotonic() - started:.1f}s after the load); answers {dict(sorted(result.answers.items()))}"
    )
    assert result.count("async") and result.count("sync"), result.answers
    back = up.children().get(target)
    assert back is not None and back.pid != victim.pid
    log = up.log()
    assert re.search(rf"platform\.child_died service={target} pid={victim.pid} signal=SIGKILL", log), log[-3000:]
    assert re.search(rf"platform\.child_restarted service={target} pid={back.pid} downtime_s=", log), log[-3000:]


def test_the_suite_covers_every_process_faas_up_runs() -> None:
    assert {"nats-server", *(m.replace("_", "-") for m in SERVICE_MODULES)} == set(SERVICES)
