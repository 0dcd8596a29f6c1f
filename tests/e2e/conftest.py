"""End-to-end tier: real containers on a real Docker engine.

The engine and the runtime images are set up by ``scripts/setup.sh`` (``make test`` runs
it). When ``FAAS_REQUIRE_DOCKER=1`` (set by ``make test`` and CI) a missing engine fails the
run instead of skipping it, so CI can never pass without running these."""

import asyncio
import os
from collections.abc import AsyncIterator

import aiodocker
import pytest

from tests.functions import PYTHON_IMAGE


async def _docker_ready() -> str | None:
    try:
        async with aiodocker.Docker() as docker:
            await docker.version()
            await docker.images.inspect(PYTHON_IMAGE)
    except Exception as err:  # any failure means "not usable here"
        return f"{type(err).__name__}: {err}"
    return None


async def _agent_containers() -> set[str]:
    async with aiodocker.Docker() as docker:
        found = await docker.containers.list(all=True, filters={"label": ["faas.node"]})
        return {c.id for c in found}


@pytest.fixture(scope="session")
async def docker_ready() -> AsyncIterator[None]:
    problem = await _docker_ready()
    if problem:
        if os.environ.get("FAAS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"Docker engine or runtime image not usable: {problem}")
        pytest.skip(f"Docker not usable ({problem}); run scripts/setup.sh")
    before = await _agent_containers()
    yield
    # Every agent of the tier stopped: none of its containers may outlive it (a leak shows
    # up here even when the test that made it passed).
    await asyncio.sleep(1.0)  # teardowns spawned at the very end
    left = await _agent_containers() - before
    assert not left, f"{len(left)} agent container(s) left behind: {sorted(c[:12] for c in left)}"


@pytest.fixture
async def docker(docker_ready: None) -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker() as client:
        yield client


async def container_gone(docker: aiodocker.Docker, cid: str | None) -> bool:
    """The container no longer exists (removed, or never made)."""
    try:
        await docker.containers.container(cid or "").show()
    except aiodocker.DockerError:
        return True
    return False


async def containers_with_label(docker: aiodocker.Docker, label: str) -> list[str]:
    found = await docker.containers.list(all=True, filters={"label": [label]})
    return [c.id for c in found]


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
