"""Which pool serves a call under each policy, and which pool containers serve call after call."""

import pytest

from node_agent.pools.keys import Layer, PoolKey, pool_keys, promotable, reusable
from schemas import FunctionRecord, Limits
from tests.functions import python_runtime

DIGEST = "sha256:" + "0" * 64


def function(**kw: object) -> FunctionRecord:
    base: dict[str, object] = {"name": "f", "runtime": "python", "version": 3, "digest": DIGEST, "size": 1}
    return FunctionRecord.model_validate({"archive": "zip", **base, **kw})


def test_the_policy_picks_the_layers() -> None:
    rt, fn, stem = python_runtime(), PoolKey(Layer.FUNCTION, "f", 3), PoolKey.runtime("python")
    assert pool_keys("none", rt, function()) == (None, None)
    assert pool_keys("warm-function", rt, function()) == (fn, None)
    assert pool_keys("warm-runtime", rt, function()) == (None, stem)
    assert pool_keys("adaptive", rt, function()) == (fn, stem)  # its own pool first, then a stem cell


def test_only_adaptive_keeps_a_stem_cell_that_loaded_a_handler() -> None:
    assert promotable("adaptive", function(handler="main:handle"))
    assert not promotable("adaptive", function())  # the command protocol: one call per process
    assert not promotable("warm-runtime", function(handler="main:handle"))  # the seed policy as it was


@pytest.mark.parametrize(
    "kw",
    [{"has_dependencies": True}, {"limits": Limits(memory_mb=512)}, {"limits": Limits(network=True)}],
)
def test_warm_runtime_runs_cold_what_an_empty_container_cannot_hold(kw: dict[str, object]) -> None:
    # dependencies live in an image of their own; other limits need a container made with them
    assert pool_keys("warm-runtime", python_runtime(), function(**kw)) == (None, None)
    assert pool_keys("warm-function", python_runtime(), function(**kw)) == (PoolKey.function(function(**kw)), None)
    assert pool_keys("adaptive", python_runtime(), function(**kw)) == (PoolKey.function(function(**kw)), None)


def test_only_a_function_pool_with_a_handler_is_reused() -> None:
    handler = function(handler="main:handle")
    assert reusable(PoolKey.function(handler), handler)
    assert not reusable(PoolKey.function(function()), function())
    assert not reusable(PoolKey.runtime("python"), handler)
    assert not reusable(PoolKey.function(handler), None)


def test_keys_name_their_contents() -> None:
    fn, rt = PoolKey.function(function()), PoolKey.runtime("python")
    assert (fn.label, str(fn)) == ("f@3", "fn:f@3")
    assert (rt.label, str(rt)) == ("python", "rt:python")
    assert len({fn, rt, PoolKey(Layer.FUNCTION, "f", 3)}) == 2  # usable as dict keys
