"""Making one warm container for a pool: create, start, and wait until it can take a call.

What a container is made of comes from the key alone: a runtime pool's from the runtime as
registered now, a function pool's from its (immutable) version and that version's runtime.
A runtime pool with a configured minimum is filled before any call has named it.
"""

import asyncio
import shutil
from pathlib import Path
from typing import Protocol

from node_agent.containers.artifacts import ArtifactCache, call_tar, skeleton_tar
from node_agent.containers.config import ContainerSpec
from node_agent.containers.deps import DependencyImages
from node_agent.containers.docker import Attached, Engine
from node_agent.containers.scripts import WARM_COMMAND_CMD, entry_script
from node_agent.containers.spec import RUN, call_spec
from node_agent.pools.keys import Layer, PoolKey, reusable
from node_agent.pools.warm import wait_for_shim, warm_command
from node_agent.pools.warmcontainer import WarmContainer
from node_agent.wire.call import max_line
from node_agent.wire.socket import MOUNT, SOCKET, SocketChannel, SocketDir
from node_agent.wire.stdio import HandlerSession
from schemas import FunctionRecord, RuntimeSpec

READY_TIMEOUT_S = 60.0
# An image whose handler shim serves the protocol on $FAAS_SOCKET says so with this label.
SOCKET_LABEL = "faas.handler-socket"
# ... and with this one, its warm mode (a stem cell) on $FAAS_WARM_SOCKET, for a handler loaded later.
WARM_SOCKET_LABEL = "faas.warm-socket"


class Catalog(Protocol):
    """Where runtimes and function versions are looked up (``calls.catalog.Catalog``)."""

    async def runtime(self, name: str) -> RuntimeSpec: ...
    async def function(self, name: str, version: int | None) -> FunctionRecord: ...


class WarmFactory:
    """The pools' factory: ``await factory(key)`` makes one idle container for ``key``."""

    def __init__(
        self,
        engine: Engine,
        artifacts: ArtifactCache,
        deps: DependencyImages,
        catalog: Catalog,
        node_id: str,
        ca_bundle: str | None,
        sockets: SocketDir | None = None,
    ) -> None:
        self.engine = engine
        self.artifacts = artifacts
        self.deps = deps
        self.catalog = catalog
        self.node_id = node_id
        self.ca_bundle = ca_bundle
        # warm handler containers whose image says its shim can (SOCKET_LABEL) get the protocol
        # over a Unix socket in a directory of their own (wire/socket.py); None: attached stdio
        self.sockets = sockets

    async def __call__(self, key: PoolKey) -> WarmContainer:
        """Create, start and prepare one idle container for a pool key."""
        labels = {"faas.pool": str(key).replace("@", "_").replace(":", "_")}
        if key.layer is Layer.RUNTIME:  # warm-runtime: the runtime image, waiting for a payload
            runtime = await self.catalog.runtime(key.name)
            cmd, shim = await warm_command(self.engine, runtime)
            spec = self._spec(runtime.image, runtime, None, cmd, labels)
            socket_dir = None
            if shim is not None:
                spec.env["FAAS_WARM"] = "1"
                if (
                    self.sockets is not None
                    and (await self.engine.image_labels(runtime.image)).get(WARM_SOCKET_LABEL) == "1"
                ):
                    socket_dir = self.sockets.new()
                    spec.binds.append(f"{socket_dir}:{MOUNT}")
                    spec.env["FAAS_WARM_SOCKET"] = SOCKET
            # Where the payload goes, the container user's (it unpacks it, not root).
            skeleton = skeleton_tar([runtime.path, "/faas"], self.artifacts.owner)
            return await self._start(spec, key, skeleton, shim=shim, socket_dir=socket_dir)
        function = await self.catalog.function(key.name, key.version)
        runtime = await self.catalog.runtime(function.runtime)
        image = await self.deps.image_for(runtime, function)
        code = await self.artifacts.code_body(function.digest, runtime.path)
        tar = call_tar(code, {"/faas/run.sh": (entry_script(runtime, function), 0o755)}, self.artifacts.owner)
        cmd = RUN if function.handler else WARM_COMMAND_CMD
        spec = self._spec(image, runtime, function, cmd, labels)
        socket_dir = None
        if function.handler and self.sockets is not None:
            if (await self.engine.image_labels(image)).get(SOCKET_LABEL) == "1":
                socket_dir = self.sockets.new()
                spec.binds.append(f"{socket_dir}:{MOUNT}")
                spec.env["FAAS_SOCKET"] = SOCKET
        return await self._start(spec, key, tar, function, socket_dir=socket_dir)

    def _spec(
        self, image: str, runtime: RuntimeSpec, function: FunctionRecord | None, cmd: list[str], labels: dict[str, str]
    ) -> ContainerSpec:
        return call_spec(image, runtime, function, cmd, labels, self.node_id, self.ca_bundle, self.artifacts.owner)

    async def _start(
        self,
        spec: ContainerSpec,
        key: PoolKey,
        tar: bytes | None = None,
        function: FunctionRecord | None = None,
        shim: str | None = None,
        socket_dir: Path | None = None,
    ) -> WarmContainer:
        """Start a pool container; a handler function's is reusable once its shim is ready,
        a warm-runtime shim's is ready once it waits for a function."""
        try:
            cid = await self.engine.create(spec)
        except BaseException:
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        attached: Attached | None = None
        stem_socket: SocketChannel | None = None
        try:
            if tar is not None:
                await self.engine.put_archive(cid, "/", tar)
            attached = await self.engine.attach(cid)
            if socket_dir is not None:
                if shim is not None:  # a stem cell: the attach stream stays the shim's stdio for now
                    stem_socket = SocketChannel(attached, socket_dir, read_stray=False)
                else:
                    attached = SocketChannel(attached, socket_dir)
            await self.engine.start(cid)
            if isinstance(attached, SocketChannel):
                await attached.connect(READY_TIMEOUT_S)
            wc = WarmContainer(cid=cid, key=key, attached=attached, reusable=reusable(key, function), shim=shim)
            if shim is not None:
                await asyncio.wait_for(wait_for_shim(attached), READY_TIMEOUT_S)
                if stem_socket is not None:  # it listens before it says it waits
                    await stem_socket.connect(READY_TIMEOUT_S)
                    wc.socket = stem_socket
            if function is not None and wc.reusable:
                wc.session = HandlerSession(attached, max_line(function), function.limits.log_bytes)
                await asyncio.wait_for(wc.session.ready(), READY_TIMEOUT_S)
            return wc
        except BaseException:
            if stem_socket is not None:
                stem_socket.detach()
            if attached is not None:
                await asyncio.shield(attached.close())
            if socket_dir is not None and not isinstance(attached, SocketChannel):
                shutil.rmtree(socket_dir, ignore_errors=True)
            await asyncio.shield(self.engine.remove(cid))
            raise
