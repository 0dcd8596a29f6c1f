"""The gateway's node router: warm nodes first, and a burst sent to a node only as far as its
heartbeat said it can take it (claims), the rest to the runtime's shared subject."""

from collections import Counter
from typing import Any

from nats.js.kv import KeyValue

from gateway.routing import NodeRouter
from schemas import Layout, NodeState, encode

LAYOUT = Layout()
SHARED = LAYOUT.invoke_runtime("py")


def entry(state: NodeState | None, node: str = "") -> KeyValue.Entry:
    key = state.node_id if state is not None else node
    return KeyValue.Entry("nodes", key, encode(state) if state else None, 1, 0, 0, None)


async def router(*states: NodeState) -> NodeRouter:
    r = NodeRouter(None, LAYOUT)  # type: ignore[arg-type]  # fed by hand, not by a watch
    for s in states:
        await r._changed(entry(s))
    return r


def node(name: str, free: int = 4, **held: Any) -> NodeState:
    return NodeState(node_id=name, policy="adaptive", slots=4, free=free, **held)


async def test_a_call_goes_to_a_node_with_its_function_warm_then_its_runtime_then_shared() -> None:
    r = await router(node("a", warm_runtimes={"py": 1}), node("b", warm_functions={"f@1": 1}))
    assert r.route("f", 1, "py")[0] == LAYOUT.invoke_node("b")
    assert r.route("g", 1, "py")[0] == LAYOUT.invoke_node("a")  # a stem cell of its runtime
    assert r.route("h", 1, "node")[0] == LAYOUT.invoke_runtime("node")  # nothing warm anywhere


async def test_a_burst_takes_what_each_node_said_it_holds_then_the_shared_subject() -> None:
    r = await router(node("a", warm_functions={"f@1": 2}), node("b", warm_functions={"f@1": 1}))
    subjects = Counter(r.route("f", 1, "py")[0] for _ in range(8))
    assert subjects == {LAYOUT.invoke_node("a"): 2, LAYOUT.invoke_node("b"): 1, SHARED: 5}


async def test_free_slots_bound_what_a_node_is_sent() -> None:
    r = await router(node("a", free=1, warm_functions={"f@1": 3}))
    assert [r.route("f", 1, "py")[0] for _ in range(2)] == [LAYOUT.invoke_node("a"), SHARED]


async def test_an_answered_call_gives_its_claim_back_and_a_heartbeat_resets_them() -> None:
    a = node("a", warm_functions={"f@1": 1})
    r = await router(a)
    subject, claim = r.route("f", 1, "py")
    assert subject == LAYOUT.invoke_node("a") and claim is not None
    assert r.route("f", 1, "py") == (SHARED, None)  # its one container is taken
    r.release(claim)  # a sequential caller's next call finds it again
    subject, claim = r.route("f", 1, "py")
    assert subject == LAYOUT.invoke_node("a")
    await r._changed(entry(a))  # the heartbeat says anew: one idle
    r.release(claim)  # given back after the reset: nothing goes below what the node said
    assert [r.route("f", 1, "py")[0] for _ in range(2)] == [LAYOUT.invoke_node("a"), SHARED]


async def test_a_node_gone_from_the_bucket_is_sent_nothing() -> None:
    r = await router(node("a", warm_functions={"f@1": 1}))
    await r._changed(entry(None, "a"))
    assert r.route("f", 1, "py") == (SHARED, None)
    assert r.nodes() == []
