"""The agent's image pruner (node_agent/containers/prune.py) on the fake engine: it removes
its own idle dependency images that no latest version needs and idle job images it pulled,
and never an image in use, a runtime's image, another node's, or one it did not pull."""

import time
from pathlib import Path
from typing import Any, cast

import pytest
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from node_agent.containers.artifacts import ArtifactCache
from node_agent.containers.config import ContainerSpec
from node_agent.containers.deps import DEPS_LABEL, DependencyImages, deps_image_name
from node_agent.containers.images import ImageUse
from node_agent.containers.prune import RECORD, ImagePruner
from schemas import FunctionRecord, RuntimeSpec, encode
from tests.fakes.docker import FakeEngine
from tests.functions import PYTHON_IMAGE, python_runtime

NODE = "n1"
DAY = 86400.0


class _Entry:
    def __init__(self, value: bytes) -> None:
        self.value = value


class FakeKV:
    """A KV bucket's latest values, as the pruner reads them (keys, get)."""

    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values

    async def keys(self) -> list[str]:
        if not self.values:
            raise NoKeysError
        return list(self.values)

    async def get(self, key: str) -> _Entry:
        if key not in self.values:
            raise KeyNotFoundError
        return _Entry(self.values[key])


def _record(name: str, digest_byte: str) -> FunctionRecord:
    return FunctionRecord(
        name=name, runtime="python", version=1, digest="sha256:" + digest_byte * 64, size=1, archive="zip",
        has_dependencies=True,
    )  # fmt: skip


def _pruner(engine: FakeEngine, tmp_path: Path, runtime: RuntimeSpec, functions: list[FunctionRecord]) -> ImagePruner:
    deps = DependencyImages(engine, cast(ArtifactCache, None), NODE, None)
    runtimes = FakeKV({runtime.name: encode(runtime)})
    kv = FakeKV({f.name: encode(f) for f in functions})
    return ImagePruner(
        engine, deps, cast(KeyValue, runtimes), cast(KeyValue, kv), NODE, tmp_path, interval_s=3600, idle_s=DAY
    )


def _age(usage: ImageUse, ref: str, days: float) -> None:
    usage.used[ref] = time.time() - days * DAY


async def test_idle_dependency_images_no_latest_version_needs_are_removed(tmp_path: Path) -> None:
    runtime = python_runtime()
    old, live, busy = _record("old", "a"), _record("live", "b"), _record("busy", "c")
    names = {r.name: deps_image_name(runtime, r) for r in (old, live, busy)}
    mine = {DEPS_LABEL: NODE}
    engine = FakeEngine(
        images={
            PYTHON_IMAGE: {},
            names["old"]: mine,
            names["live"]: mine,
            names["busy"]: mine,
            "faas-deps-other:1": {DEPS_LABEL: "n2"},  # another node's
            "faas-deps-fresh:1": mine,  # no function needs it, used an hour ago
        }
    )
    # "old" and "busy": deleted, or an older version; "busy" has a container still
    pruner = _pruner(engine, tmp_path, runtime, [live])
    for ref in (names["old"], names["live"], names["busy"], "faas-deps-other:1"):
        _age(engine.usage, ref, 2)
    _age(engine.usage, "faas-deps-fresh:1", 1 / 24)
    busy_cid = await engine.create(ContainerSpec(image=names["busy"], cmd=[]))  # a warm container
    _age(engine.usage, names["busy"], 2)  # it was created long ago

    result = await pruner.prune()
    assert result.removed == [names["old"]]
    assert names["old"] not in engine.images and {names["live"], names["busy"], "faas-deps-other:1"} <= set(
        engine.images
    )
    assert busy_cid in engine.live


async def test_job_images_it_pulled_go_once_idle_never_others(tmp_path: Path) -> None:
    runtime = python_runtime()
    engine = FakeEngine(images={PYTHON_IMAGE: {}, "mine-before:1": {}}, pullable={"alpine", "busybox:1", PYTHON_IMAGE})
    pruner = _pruner(engine, tmp_path, runtime, [])
    for image in ("alpine", "busybox:1", PYTHON_IMAGE):
        await engine.pull(image)
    _age(engine.usage, "alpine:latest", 2)
    _age(engine.usage, PYTHON_IMAGE + ":latest", 2)  # pulled by a job, but a runtime's image
    _age(engine.usage, "mine-before:1", 2)  # present, never pulled by the agent
    # busybox: pulled just now
    result = await pruner.prune()
    assert result.removed == ["alpine:latest"]
    assert set(engine.images) == {PYTHON_IMAGE, "mine-before:1", "busybox:1"}
    assert "alpine:latest" not in engine.usage.pulled


async def test_the_record_of_pulls_outlives_a_restart(tmp_path: Path) -> None:
    runtime = python_runtime()
    engine = FakeEngine(images={PYTHON_IMAGE: {}}, pullable={"alpine"})
    pruner = _pruner(engine, tmp_path, runtime, [])
    await engine.pull("alpine")
    _age(engine.usage, "alpine:latest", 2)
    await engine.create_job(ContainerSpec(image="alpine", cmd=[]))  # used again: not idle
    await pruner.prune()
    assert (tmp_path / RECORD).exists() and "alpine" in engine.images

    restarted = FakeEngine(images={PYTHON_IMAGE: {}, "alpine": {}})
    again = _pruner(restarted, tmp_path, runtime, [])
    assert "alpine:latest" in restarted.usage.pulled
    _age(restarted.usage, "alpine:latest", 2)
    assert (await again.prune()).removed == ["alpine:latest"]


@pytest.mark.parametrize("text", ["", "not json", '{"pulled": 3}'])
async def test_an_unreadable_record_is_no_record(tmp_path: Path, text: str) -> None:
    (tmp_path / RECORD).write_text(text)
    usage: Any = ImageUse()
    usage.load(tmp_path / RECORD)
    assert usage.pulled == {} and usage.used == {}
