"""A slot runs calls in a row through ack_next, bounded, and always gives the slot back
(node_agent/agent.py ``NodeAgent._handle``), with a fake pull consumer and call runner."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from node_agent.agent import CHAIN_MAX, NodeAgent
from node_agent.settings import AgentSettings


class FakeMsg:
    def __init__(self, n: int) -> None:
        self.n = n
        self.subject = "faas.invoke.python"
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


class FakePull:
    """``queued`` more messages are waiting after the first."""

    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.chained: list[int] = []

    async def ack_next(self, msg: FakeMsg, wait_s: float = 0.0) -> "asyncio.Future[FakeMsg | None]":
        self.chained.append(msg.n)
        future: asyncio.Future[FakeMsg | None] = asyncio.get_running_loop().create_future()
        if self.queued > 0:
            self.queued -= 1
            future.set_result(FakeMsg(msg.n + 1))
        else:
            future.set_result(None)
        return future


class FakeRunner:
    def __init__(self, fail_at: int | None = None) -> None:
        self.ran: list[int] = []
        self.msgs: list[FakeMsg] = []
        self.fail_at = fail_at

    async def handle(self, msg: FakeMsg, ack: Any) -> None:
        self.ran.append(msg.n)
        self.msgs.append(msg)
        if msg.n == self.fail_at:
            raise RuntimeError("boom before the ack")
        await ack(msg)


def agent(tmp_path: Path, runner: FakeRunner) -> NodeAgent:
    a = NodeAgent(AgentSettings(nats_url="nats://127.0.0.1:1", node_id="n1", slots=1, cache_dir=tmp_path))
    a._calls_runner = runner  # type: ignore[assignment]
    return a


async def run_one(a: NodeAgent, pull: FakePull, first: FakeMsg) -> None:
    await a._slots.acquire()  # as the pull loop does before it fetches
    await asyncio.wait_for(a._handle(first, pull), 5)  # type: ignore[arg-type]
    assert a._slots._value == 1 and a.running == 0  # the slot is back


async def test_a_slot_runs_what_its_acks_bring_until_none_is_waiting(tmp_path: Path) -> None:
    runner, pull = FakeRunner(), FakePull(queued=3)
    await run_one(agent(tmp_path, runner), pull, FakeMsg(0))
    assert runner.ran == [0, 1, 2, 3]
    assert pull.chained == [0, 1, 2, 3]  # the last ack_next found nothing


async def test_a_chain_is_bounded_so_that_other_slot_waiters_get_their_turn(tmp_path: Path) -> None:
    runner, pull = FakeRunner(), FakePull(queued=10 * CHAIN_MAX)
    await run_one(agent(tmp_path, runner), pull, FakeMsg(0))
    assert runner.ran == list(range(CHAIN_MAX))
    assert len(pull.chained) == CHAIN_MAX - 1 and runner.msgs[-1].acked  # the last ack is a plain one


@pytest.mark.parametrize("stopping", [False, True])
async def test_a_failed_call_or_a_stopping_agent_ends_the_chain(tmp_path: Path, stopping: bool) -> None:
    runner, pull = FakeRunner(fail_at=None if stopping else 2), FakePull(queued=10)
    a = agent(tmp_path, runner)
    if stopping:
        a._stopping.set()
    await run_one(a, pull, FakeMsg(0))
    # a call that failed before its ack is not acked (redelivered) and asks for nothing more
    assert runner.ran == ([0] if stopping else [0, 1, 2])
    assert pull.chained == ([] if stopping else [0, 1])
    assert runner.msgs[-1].acked == stopping
