"""Dependencies once per function version per node: the first time a function with
dependencies is needed, its code is installed in a container from the runtime's image, with
the network and the CA bundle, and the container is committed as a local image keyed by the
artifact digest. Every later container of that version starts from it, ready to run.

The install's output goes, as it comes, to the ``on_log`` of the call that started the build
(as stream ``INSTALL``: log lines ``"stream": "install"``), so that whoever follows that
call's logs sees the install live. A call that waits for a build another one started sees
nothing of it."""

import asyncio
import hashlib
import logging
import shlex
import time
from collections.abc import Awaitable, Callable

from common.logs import fields
from node_agent.containers.artifacts import ROOT, ArtifactCache, call_tar
from node_agent.containers.config import ContainerSpec
from node_agent.containers.docker import Engine
from node_agent.errors import AgentError
from node_agent.logstream import INSTALL
from schemas import FunctionRecord, RuntimeSpec

log = logging.getLogger(__name__)

CA_PATH = "/etc/faas/ca.pem"
# A dependency image's name starts so; it carries this label, valued with the node that
# built it (Docker keeps the build container's labels): what the image pruner may remove.
DEPS_PREFIX = "faas-deps-"
DEPS_LABEL = "faas.deps"
INSTALL_TIMEOUT_S = 600.0
# Once the install has exited, how long its output may take to arrive in full.
OUTPUT_DRAIN_S = 5.0

OnLog = Callable[[int, bytes], Awaitable[None]]


class DependenciesFailed(AgentError):
    kind = "DependenciesFailed"


def ca_env(ca_bundle: str | None) -> dict[str, str]:
    if not ca_bundle:
        return {}
    return {
        "PIP_CERT": CA_PATH,
        "SSL_CERT_FILE": CA_PATH,
        "REQUESTS_CA_BUNDLE": CA_PATH,
        "NODE_EXTRA_CA_CERTS": CA_PATH,
        "NPM_CONFIG_CAFILE": CA_PATH,
    }


def deps_image_name(runtime: RuntimeSpec, function: FunctionRecord) -> str:
    """Same code + same runtime image + same install command = same image."""
    h = hashlib.sha256(f"{function.digest}|{runtime.image}|{runtime.dependencies}|{runtime.path}".encode())
    return f"{DEPS_PREFIX}{function.name.lower()}:{h.hexdigest()[:20]}"


class DependencyImages:
    def __init__(self, engine: Engine, artifacts: ArtifactCache, node_id: str, ca_bundle: str | None) -> None:
        self._engine = engine
        self._artifacts = artifacts
        self._node_id = node_id
        self._ca_bundle = ca_bundle
        self._locks: dict[str, asyncio.Lock] = {}
        self._known: set[str] = set()
        self.builds = 0

    async def image_for(self, runtime: RuntimeSpec, function: FunctionRecord, on_log: OnLog | None = None) -> str:
        """The image a container of this function version starts from; if it must be built
        now, the install's output goes to ``on_log`` (stream ``INSTALL``)."""
        if not function.has_dependencies or not runtime.dependencies:
            return runtime.image
        image = deps_image_name(runtime, function)
        if image in self._known:
            return image
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            if image not in self._known and not await self._engine.image_exists(image):
                await self._build(runtime, function, image, on_log)
            self._known.add(image)
        return image

    def forget(self, image: str) -> None:
        """``image`` was removed (containers/prune.py): built again when next needed."""
        self._known.discard(image)

    async def _build(self, runtime: RuntimeSpec, function: FunctionRecord, image: str, on_log: OnLog | None) -> None:
        t0 = time.perf_counter()
        self.builds += 1
        script = (
            f'#!/bin/sh\ncd {shlex.quote(runtime.path)} || exit 125\nexec sh -c "$FAAS_DEPENDENCIES" 1>&2\n'
        ).encode()
        # Root's, like the install: root without capabilities (no CAP_DAC_OVERRIDE) may only
        # read and write what it owns. The calls' code is copied in again, the call user's.
        code = await self._artifacts.code_body(function.digest, runtime.path, ROOT)
        tar = call_tar(code, {"/faas/install.sh": (script, 0o755)}, ROOT)
        spec = ContainerSpec(
            image=runtime.image,
            cmd=["sh", "/faas/install.sh"],
            env={"FAAS_DEPENDENCIES": runtime.dependencies, **ca_env(self._ca_bundle)},
            workdir=runtime.path,
            labels={"faas.node": self._node_id, "faas.build": function.name, DEPS_LABEL: self._node_id},
            memory_mb=max(function.limits.memory_mb, 1024),
            network=True,
            pids_limit=1024,
            cpus=2.0,
            binds=[f"{self._ca_bundle}:{CA_PATH}:ro"] if self._ca_bundle else [],
            # Installs go where the runtime puts them (pip: the system's site-packages), which
            # only root may write; calls from the committed image run as call_user all the same.
            user="0:0",
        )
        cid = await self._engine.create(spec)
        relay: asyncio.Task[None] | None = None
        try:
            await self._engine.put_archive(cid, "/", tar)
            await self._engine.start(cid)
            if on_log is not None:
                relay = asyncio.create_task(self._relay(cid, function, on_log), name=f"deps:{function.name}:output")
            code_ = await asyncio.wait_for(self._engine.wait(cid), INSTALL_TIMEOUT_S)
            if relay is not None:
                await asyncio.wait({relay}, timeout=OUTPUT_DRAIN_S)
            if code_ != 0:
                out = await self._engine.output(cid, 1 << 16)
                tail = out.stderr[-4000:].decode("utf-8", errors="replace").strip()
                raise DependenciesFailed(f"installing dependencies failed (exit {code_}): {tail}")
            await self._engine.commit(cid, image)
        except TimeoutError:
            raise DependenciesFailed(f"installing dependencies took longer than {INSTALL_TIMEOUT_S:g}s") from None
        finally:
            if relay is not None:
                relay.cancel()
                await asyncio.gather(relay, return_exceptions=True)
            await asyncio.shield(self._engine.remove(cid))
        log.info(
            "deps.image_built",
            extra=fields(
                function=function.name,
                version=function.version,
                image=image,
                ms=round((time.perf_counter() - t0) * 1000),
            ),
        )

    async def _relay(self, cid: str, function: FunctionRecord, on_log: OnLog) -> None:
        """The install's output (stdout and stderr alike) to ``on_log``; best effort: a failure
        is logged and ends the relay, never the install."""
        try:
            async for _stream, data in self._engine.follow_output(cid):
                await on_log(INSTALL, data)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("deps.output_failed", exc_info=True, extra=fields(function=function.name, container=cid[:12]))
