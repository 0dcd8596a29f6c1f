"""Dependency images on a schedule (node_agent/containers/prune.py), with real Docker and a
one-second schedule: the image of a version no longer latest is removed, the latest
version's is kept, and the runtime's image is never touched. (Job images the agent pulled
are covered by tests/unit/test_image_prune.py: no registry is reachable here.)"""

from collections.abc import AsyncIterator

import aiodocker
import aiohttp
import pytest

from faas_cli.up import Platform
from tests.e2e.conftest import wait_until
from tests.e2e.platform_harness import running_platform, session
from tests.functions import zip_bytes

pytestmark = pytest.mark.e2e

# requirements.txt names something, so the version gets a dependency image; the runtime's
# install step needs no network (no registry or index is reachable here).
RUNTIME = {"name": "pydeps", "image": "faas-python", "path": "/app", "run": "python3 main.py", "dependencies": "true"}


@pytest.fixture
async def platform(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    env = {"FAAS_AGENT_IMAGE_PRUNE_S": "1", "FAAS_AGENT_IMAGE_IDLE_S": "0"}
    async with running_platform(tmp_path_factory.mktemp("prune"), policy="none", extra_env=env) as p:
        yield p


async def _deploy_and_call(http: aiohttp.ClientSession, n: int) -> None:
    form = aiohttp.FormData()
    form.add_field("name", "withdeps")
    form.add_field("runtime", RUNTIME["name"])
    form.add_field("module", zip_bytes({"main.py": f"print({n})\n", "requirements.txt": "six\n"}), filename="f.zip")
    async with http.post("/v1/functions", data=form) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post("/v1/functions/withdeps/invoke", json={}) as resp:
        call = await resp.json()
    assert call["status"] == "DONE" and call["result"] == n, call


async def _deps_images(docker: aiodocker.Docker, node: str) -> set[str]:
    found = await docker.images.list(filters={"label": [f"faas.deps={node}"]})
    return {t for i in found for t in (i.get("RepoTags") or [])}


async def test_a_replaced_versions_dependency_image_is_pruned(platform: Platform, docker: aiodocker.Docker) -> None:
    node = platform.cfg.extra_env["FAAS_AGENT_NODE_ID"]
    runtime_image = (await docker.images.inspect("faas-python"))["Id"]
    try:
        await _replace_a_version(platform, docker, node)
    finally:  # this test's node id is its own: nothing else removes what it left
        for tag in await _deps_images(docker, node):
            await docker.images.delete(tag, force=True)
    assert (await docker.images.inspect("faas-python"))["Id"] == runtime_image


async def _replace_a_version(platform: Platform, docker: aiodocker.Docker, node: str) -> None:
    async with session(platform) as http:
        async with http.post("/v1/runtimes", json=RUNTIME) as resp:
            assert resp.status == 201, await resp.text()
        await _deploy_and_call(http, 1)
        first = await _deps_images(docker, node)
        assert len(first) == 1, first
        await _deploy_and_call(http, 2)  # version 2: its own image; version 1's is no longer needed

        async def only_the_latest() -> bool:
            now = await _deps_images(docker, node)
            return len(now) == 1 and now.isdisjoint(first)

        await wait_until(only_the_latest, timeout=20)
        await _deploy_and_call(http, 2)  # the same code again: still served
