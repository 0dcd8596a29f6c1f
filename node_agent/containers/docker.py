"""The only module that talks to Docker (through aiodocker). Everything is non-blocking.

Container teardown is one function, :meth:`DockerEngine.remove`. A container with network
access joins the sealed network (:meth:`DockerEngine.seal_network`, containers/firewall.py);
until that is in place, or if it failed, such a container is refused: none runs with a route
to the host.
"""

import asyncio
import logging
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiodocker
from aiodocker.exceptions import DockerError

from common.logs import fields
from node_agent.containers import firewall
from node_agent.containers.config import ContainerSpec, container_config, container_kind
from node_agent.containers.firewall import SealConfig
from node_agent.containers.images import ImageInfo, ImageUse
from node_agent.errors import EngineError, ImageNotFound, NetworkUnavailable, StreamClosed

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">BxxxI")

# Docker's stream ids in attached and multiplexed output frames: (stream, bytes).
STDOUT, STDERR = 1, 2


@dataclass
class Output:
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass
class ExitState:
    code: int
    oom_killed: bool


class Attached(Protocol):
    """stdin/stdout/stderr of a running container."""

    async def write(self, data: bytes) -> None: ...
    async def read(self) -> tuple[int, bytes] | None: ...
    async def close(self) -> None: ...


class _AttachedStream:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write_in(data)
        except (AssertionError, RuntimeError, OSError, DockerError) as err:
            # aiodocker asserts on a transport that is gone; the container's process died
            raise StreamClosed(f"the container's stdin is closed: {err!r}") from err

    async def read(self) -> tuple[int, bytes] | None:
        """The next output frame, (1 = stdout | 2 = stderr, bytes); None at end of stream."""
        msg = await self._stream.read_out()
        return None if msg is None else (int(msg.stream), bytes(msg.data))

    async def close(self) -> None:
        await self._stream.close()


class Engine(Protocol):
    """What the runner needs from a container engine (fakes implement it for unit tests)."""

    # what it pulled, and when each image last started a container (containers/images.py)
    usage: ImageUse
    # containers created, by kind (containers/config.py: container_kind); the agent's metrics
    starts_by_kind: Counter[str]

    async def create(self, spec: ContainerSpec) -> str: ...
    async def put_archive(self, cid: str, path: str, data: bytes) -> None: ...
    async def start(self, cid: str) -> None: ...
    async def wait(self, cid: str) -> int: ...
    async def exit_state(self, cid: str) -> ExitState: ...
    async def output(self, cid: str, max_bytes: int) -> Output: ...
    async def remove(self, cid: str, grace_s: float = 0) -> None: ...
    async def image_exists(self, image: str) -> bool: ...
    async def image_labels(self, image: str) -> dict[str, str]: ...
    async def remove_labelled(self, label: str) -> int: ...
    async def attach(self, cid: str) -> Attached: ...
    async def commit(self, cid: str, image: str) -> None: ...
    async def pull(self, image: str, auth: dict[str, str] | None = None) -> None: ...
    async def list_images(self, label: str | None = None) -> list[ImageInfo]: ...
    async def images_in_use(self) -> set[str]: ...
    async def remove_image(self, image: str) -> bool: ...
    async def create_job(self, spec: ContainerSpec) -> str: ...
    def follow_output(self, cid: str, follow: bool = True) -> AsyncIterator[tuple[int, bytes]]: ...
    async def seal_network(self, seal: SealConfig) -> bool: ...
    def open_network(self) -> None: ...
    async def close(self) -> None: ...


# The options of the sealed network (besides its bridge's name): containers on it cannot
# reach each other; their traffic out is masqueraded, as on Docker's default bridge.
_SEALED_OPTIONS = {
    "com.docker.network.bridge.enable_icc": "false",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
}


class DockerEngine:
    def __init__(self, url: str | None = None) -> None:
        self._docker = aiodocker.Docker(url=url)
        # Where containers with network access go; None: they are refused, for this reason.
        self._network: str | None = None
        self._unsealed = "the container network has not been sealed on this node"
        self.usage = ImageUse()
        self.starts_by_kind: Counter[str] = Counter()

    async def ping(self) -> None:
        try:
            await self._docker.version()
        except (DockerError, OSError) as err:
            raise EngineError(f"Docker engine not reachable: {err}") from err

    def _config(self, spec: ContainerSpec) -> dict[str, Any]:
        if spec.network and self._network is None:
            raise NetworkUnavailable(f"this node gives containers no network access: {self._unsealed}")
        return container_config(spec, self._network or "none")

    async def create(self, spec: ContainerSpec) -> str:
        self.usage.note_use(spec.image)
        try:
            container = await self._docker.containers.create(self._config(spec))
        except DockerError as err:
            if err.status == 404:
                raise ImageNotFound(f"image {spec.image!r} is not present on this node") from err
            raise EngineError(f"create failed: {err.message}") from err
        self.starts_by_kind[container_kind(spec)] += 1
        return str(container.id)

    async def put_archive(self, cid: str, path: str, data: bytes) -> None:
        try:
            await self._docker.containers.container(cid).put_archive(path, data)  # type: ignore[no-untyped-call]
        except DockerError as err:
            raise EngineError(f"copying the code into the container failed: {err.message}") from err

    async def start(self, cid: str) -> None:
        try:
            await self._docker.containers.container(cid).start()
        except DockerError as err:
            raise EngineError(f"start failed: {err.message}") from err

    async def wait(self, cid: str) -> int:
        result = await self._docker.containers.container(cid).wait()
        return int(result.get("StatusCode", -1))

    async def exit_state(self, cid: str) -> ExitState:
        info = await self._docker.containers.container(cid).show()
        state = info.get("State", {})
        return ExitState(code=int(state.get("ExitCode", -1)), oom_killed=bool(state.get("OOMKilled")))

    async def follow_output(self, cid: str, follow: bool = True) -> AsyncIterator[tuple[int, bytes]]:
        """(stream, bytes) frames of a container's output from its start: 1 = stdout,
        2 = stderr. With ``follow`` it ends when the container exits.

        Read raw and demultiplexed here: aiodocker's ``log()`` decodes to text, cannot tell
        the streams apart and reads everything into memory.
        """
        params = {"stdout": "1", "stderr": "1", "follow": "1" if follow else "0"}
        async with self._docker._query(
            f"containers/{cid}/logs",
            method="GET",
            params=params,
            timeout=self._docker._resolve_long_running_timeout(None),
        ) as resp:
            reader = resp.content
            while True:
                try:
                    header = await reader.readexactly(_FRAME.size)
                except asyncio.IncompleteReadError:
                    return
                stream, size = _FRAME.unpack(header)
                yield stream, await reader.readexactly(size)

    async def output(self, cid: str, max_bytes: int) -> Output:
        """stdout and stderr of a finished container, each capped at ``max_bytes``."""
        out, err = bytearray(), bytearray()
        truncated = {1: False, 2: False}
        async for stream, chunk in self.follow_output(cid, follow=False):
            buf = out if stream == 1 else err
            room = max_bytes - len(buf)
            if room >= len(chunk):
                buf += chunk
            else:
                if room > 0:
                    buf += chunk[:room]
                truncated[1 if stream == 1 else 2] = True
                if truncated[1] and truncated[2]:
                    break  # both capped: the rest of a flood is not worth reading
        return Output(bytes(out), bytes(err), truncated[1], truncated[2])

    async def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        """Pull ``image`` (with registry credentials if given)."""
        try:
            await self._docker.images.pull(image, auth=auth)
        except DockerError as err:
            if err.status == 404:
                raise ImageNotFound(f"image {image!r} was not found on its registry: {err.message}") from err
            raise EngineError(f"pulling {image!r} failed: {err.message}") from err
        self.usage.note_pull(image)

    async def list_images(self, label: str | None = None) -> list[ImageInfo]:
        """Local images (with ``label``: ``key`` or ``key=value``, those carrying it)."""
        found = await self._docker.images.list(filters={"label": [label]} if label else None)
        return [ImageInfo(i["Id"], list(i.get("RepoTags") or []), dict(i.get("Labels") or {})) for i in found]

    async def images_in_use(self) -> set[str]:
        """The image ids of every container, running or not."""
        return {str(c._container.get("ImageID")) for c in await self._docker.containers.list(all=True)}

    async def remove_image(self, image: str) -> bool:
        """Untag (and delete, if it was its last name) a local image; False if it was gone or
        a container uses it (Docker refuses then)."""
        try:
            await self._docker.images.delete(image)
        except DockerError as err:
            if err.status in (404, 409):
                return False
            raise EngineError(f"removing image {image!r} failed: {err.message}") from err
        return True

    async def remove(self, cid: str, grace_s: float = 0) -> None:
        """The one teardown: SIGTERM and up to ``grace_s`` to exit, then SIGKILL, then delete."""
        container = self._docker.containers.container(cid)
        try:
            if grace_s > 0:
                await container.stop(t=int(grace_s))
            await container.delete(force=True, v=True)
        except DockerError as err:
            if err.status != 404:  # already gone is fine
                log.warning("container.remove_failed", extra=fields(container=cid[:12], error=err.message))

    async def image_exists(self, image: str) -> bool:
        try:
            await self._docker.images.inspect(image)
        except DockerError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def image_labels(self, image: str) -> dict[str, str]:
        """The labels of a local image (what it declares about itself, e.g. its shim)."""
        try:
            info = await self._docker.images.inspect(image)
        except DockerError as err:
            if err.status == 404:
                raise ImageNotFound(f"image {image!r} is not present on this node") from err
            raise EngineError(f"inspecting {image!r} failed: {err.message}") from err
        return dict((info.get("Config") or {}).get("Labels") or {})

    async def remove_labelled(self, label: str) -> int:
        """Remove every container carrying ``label`` (e.g. left behind by a killed agent)."""
        found = await self._docker.containers.list(all=True, filters={"label": [label]})
        await asyncio.gather(*(self.remove(c.id) for c in found))
        return len(found)

    async def attach(self, cid: str) -> Attached:
        """Attach to stdin/stdout/stderr; call before ``start`` so no output is missed."""
        stream = self._docker.containers.container(cid).attach(stdin=True, stdout=True, stderr=True)
        try:
            await stream._init()  # connect now, not on first use
        except DockerError as err:
            raise EngineError(f"attach failed: {err.message}") from err
        return _AttachedStream(stream)

    async def commit(self, cid: str, image: str) -> None:
        repo, _, tag = image.partition(":")
        try:
            await self._docker.containers.container(cid).commit(repository=repo, tag=tag or "latest")
        except DockerError as err:
            raise EngineError(f"commit of {image!r} failed: {err.message}") from err

    async def close(self) -> None:
        await self._docker.close()

    # --- the sealed network ---------------------------------------------------------------
    async def seal_network(self, seal: SealConfig) -> bool:
        """From now on containers with network access join ``seal.network``, made if missing,
        behind the host rules of containers/firewall.py (applied, or checked: True if they had
        to change). If either fails, such containers are refused (and this raises
        :class:`NetworkUnavailable` saying why); calling it again retries."""
        try:
            if not str(self._docker.docker_host).startswith("unix://"):
                raise NetworkUnavailable(
                    f"the Docker engine ({self._docker.docker_host}) is on another host, whose firewall this "
                    "agent cannot set: seal it there and set FAAS_AGENT_NETWORK_SEAL=false"
                )
            await self._ensure_network(seal)
            changed = await firewall.apply(seal)
        except (NetworkUnavailable, DockerError, OSError) as err:  # OSError: Docker went away
            self._network, self._unsealed = None, f"sealing its network failed: {err}"
            raise NetworkUnavailable(self._unsealed) from err
        self._network = seal.network
        return changed

    def open_network(self) -> None:
        """The operator's choice (FAAS_AGENT_NETWORK_SEAL=false): containers with network
        access use Docker's default bridge, which reaches the host and everything it does."""
        self._network = "bridge"

    async def _ensure_network(self, seal: SealConfig) -> None:
        options = {**_SEALED_OPTIONS, "com.docker.network.bridge.name": seal.bridge}
        try:
            info = await (await self._docker.networks.get(seal.network)).show()
        except DockerError as err:
            if err.status != 404:
                raise NetworkUnavailable(f"inspecting network {seal.network!r} failed: {err.message}") from err
            config = {
                "Name": seal.network,
                "Driver": "bridge",
                "CheckDuplicate": True,
                "EnableIPv6": False,
                "Internal": False,
                "Options": options,
                "Labels": {"faas.network": "sealed"},
            }
            try:
                await self._docker.networks.create(config)
            except DockerError as create_err:
                if create_err.status != 409:  # another agent made it meanwhile
                    raise NetworkUnavailable(
                        f"creating network {seal.network!r} failed: {create_err.message}"
                    ) from create_err
            info = await (await self._docker.networks.get(seal.network)).show()
            log.info("network.created", extra=fields(network=seal.network, bridge=seal.bridge))
        have = info.get("Options") or {}
        if (
            info.get("Driver") != "bridge"
            or info.get("EnableIPv6")
            or any(have.get(k) != v for k, v in options.items())
        ):
            raise NetworkUnavailable(
                f"network {seal.network!r} exists with other settings than the sealed network's "
                f"(bridge {seal.bridge}, {_SEALED_OPTIONS}, no IPv6): remove it (docker network rm {seal.network})"
            )

    async def create_job(self, spec: ContainerSpec) -> str:
        """A container for a plain job (any image, any command): ``create``'s hardening (no
        capabilities, ``no-new-privileges``, the limits), the image's own command when
        ``spec.cmd`` is empty."""
        config = self._config(spec)
        self.usage.note_use(spec.image)
        if not spec.cmd:
            config.pop("Cmd", None)
        try:
            container = await self._docker.containers.create(config)
        except DockerError as err:
            if err.status == 404:
                raise ImageNotFound(f"image {spec.image!r} is not present on this node") from err
            raise EngineError(f"create failed: {err.message}") from err
        self.starts_by_kind["job"] += 1
        return str(container.id)
