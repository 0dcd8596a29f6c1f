"""A fake Docker engine: node_agent/containers/docker.py's ``Engine`` Protocol, in memory.

A container made from a :class:`ContainerSpec` holds the files ``put_archive`` copied into
it (the tar is unpacked) and, once started, runs a *program* (tests/fakes/container.py): an
async function of its process (command, environment, working directory, files, stdin) that
writes stdout and stderr and returns the exit code. Its output reaches attach streams as
``(stream, bytes)`` frames, and the engine's log (``follow_output``, ``output``) if the
container keeps logs. ``remove`` kills the program. Everything the agent asks for is recorded:
containers, starts, removes with their grace, pulls, commits, and every call by name.

tests/fakes/runtime.py has the program of a runtime image: the agent's scripts around a
function written in Python (command or handler protocol).
"""

import asyncio
import itertools
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from node_agent.containers.config import ContainerSpec, container_kind
from node_agent.containers.docker import Engine, ExitState, Output
from node_agent.containers.firewall import SealConfig
from node_agent.containers.images import ImageInfo, ImageUse, image_ref
from node_agent.errors import EngineError, ImageNotFound, NetworkUnavailable
from tests.fakes.container import KILLED, STDERR, STDOUT, Exit, FakeAttached, FakeContainer, Process, Program, Signal


class FakeEngine:
    """The ``Engine`` Protocol in memory.

    ``program`` is what a started container runs (``programs`` by image first); without one
    a container exits 0 at once. ``images`` are present (a mapping gives their labels),
    ``pullable`` can be pulled. ``only``: the engine calls allowed (others fail the test)."""

    def __init__(
        self,
        program: Program | None = None,
        *,
        programs: Mapping[str, Program] | None = None,
        images: Iterable[str] | Mapping[str, Mapping[str, str]] = (),
        pullable: Iterable[str] = (),
        only: Iterable[str] | None = None,
        seal_fails: str | None = None,
    ) -> None:
        self.program = program
        self.programs = dict(programs or {})
        if isinstance(images, Mapping):
            self.images = {name: dict(labels) for name, labels in images.items()}
        else:
            self.images = {name: {} for name in images}
        self.pullable = set(pullable)
        self.only = None if only is None else set(only)
        # seal_network fails with this message (then containers with network are refused)
        self.seal_fails = seal_fails
        self.seals: list[SealConfig] = []  # every seal_network, in order
        self.network: str | None = "faas-fn"  # as if sealed; None: network refused
        self.containers: dict[str, FakeContainer] = {}
        self.created: list[ContainerSpec] = []  # in order, create and create_job
        self.starts_by_kind: Counter[str] = Counter()  # as the real engine counts them
        self.starts: list[str] = []
        self.removals: list[tuple[str, float]] = []  # (container, grace_s) of every remove
        self.pulls: list[tuple[str, dict[str, str] | None]] = []
        self.commits: list[tuple[str, str]] = []  # (container, image)
        self.crashes: list[Exception] = []  # what programs raised (their container exited 1)
        self.calls: list[str] = []  # every Engine method called, by name
        self.usage = ImageUse()
        self.removed_images: list[str] = []
        self.closed = False
        self._signal = Signal()
        self._ids = itertools.count(1)
        self._image_fs: dict[str, tuple[dict[str, bytes], dict[str, int], set[str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- what the tests read -------------------------------------------------------------
    @property
    def removed(self) -> list[str]:
        """The containers removed, in order (a container removed twice is there twice)."""
        return [cid for cid, _ in self.removals]

    @property
    def live(self) -> list[str]:
        """Containers created and not removed."""
        return [cid for cid, c in self.containers.items() if c.state != "removed"]

    async def until(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked at every change of the fake)."""
        async with asyncio.timeout(timeout):
            await self._signal.until(predicate)

    # --- Engine ---------------------------------------------------------------------------
    async def create(self, spec: ContainerSpec) -> str:
        self._called("create")
        return self._create(spec, job=False)

    async def create_job(self, spec: ContainerSpec) -> str:
        self._called("create_job")
        return self._create(spec, job=True)

    async def put_archive(self, cid: str, path: str, data: bytes) -> None:
        self._called("put_archive")
        self._container(cid).unpack(path, data)

    async def start(self, cid: str) -> None:
        self._called("start")
        c = self._container(cid)
        if c.state != "created":
            raise EngineError(f"start failed: container {cid} is {c.state}")
        c.state = "running"
        self.starts.append(cid)
        program = self.programs.get(c.spec.image, self.program)
        c.task = asyncio.create_task(self._run(c, program), name=f"fake-docker:{cid}")
        self._tasks.add(c.task)
        c.task.add_done_callback(self._tasks.discard)
        self._signal.notify()

    async def wait(self, cid: str) -> int:
        self._called("wait")
        c = self._container(cid)
        await self._signal.until(lambda: c.exit_code is not None)
        assert c.exit_code is not None
        return c.exit_code

    async def exit_state(self, cid: str) -> ExitState:
        self._called("exit_state")
        c = self._container(cid)
        return ExitState(code=0 if c.exit_code is None else c.exit_code, oom_killed=c.oom_killed)

    async def output(self, cid: str, max_bytes: int) -> Output:
        self._called("output")
        out, err = bytearray(), bytearray()
        truncated = {STDOUT: False, STDERR: False}
        for stream, chunk in self._log(cid):
            buf = out if stream == STDOUT else err
            room = max_bytes - len(buf)
            buf += chunk[: max(room, 0)]
            truncated[stream] |= room < len(chunk)
        return Output(bytes(out), bytes(err), truncated[STDOUT], truncated[STDERR])

    async def follow_output(self, cid: str, follow: bool = True) -> AsyncIterator[tuple[int, bytes]]:
        self._called("follow_output")
        log, c = self._log(cid), self.containers[cid]
        sent = 0

        def more() -> bool:
            return sent < len(log) or c.exit_code is not None

        while True:
            while sent < len(log):
                yield log[sent]
                sent += 1
            if not follow or c.exit_code is not None:
                return
            await self._signal.until(more)

    async def remove(self, cid: str, grace_s: float = 0) -> None:
        """The one teardown: the program is killed (exit 137 if it was running)."""
        self._called("remove")
        self.removals.append((cid, grace_s))
        c = self.containers.get(cid)
        if c is None or c.state == "removed":
            return  # already gone is fine, as with Docker
        c.exited(KILLED)
        c.state = "removed"
        self._signal.notify()
        if c.task is not None and not c.task.done():
            c.task.cancel()
            await asyncio.gather(c.task, return_exceptions=True)

    async def image_exists(self, image: str) -> bool:
        self._called("image_exists")
        return image in self.images

    async def image_labels(self, image: str) -> dict[str, str]:
        self._called("image_labels")
        if image not in self.images:
            raise ImageNotFound(f"image {image!r} is not present on this node")
        return dict(self.images[image])

    async def remove_labelled(self, label: str) -> int:
        self._called("remove_labelled")
        key, has_value, value = label.partition("=")
        found = [
            cid
            for cid, c in self.containers.items()
            if c.state != "removed" and key in c.labels and (not has_value or c.labels[key] == value)
        ]
        for cid in found:
            await self.remove(cid)
        return len(found)

    async def attach(self, cid: str) -> FakeAttached:
        self._called("attach")
        c = self._container(cid)
        attached = FakeAttached(self._signal, stdin=c.write_stdin)
        c.attachments.append(attached)
        if c.exit_code is not None:
            attached.end()
        return attached

    async def commit(self, cid: str, image: str) -> None:
        """``image`` becomes present, with the container's files (and its image's labels)."""
        self._called("commit")
        c = self._container(cid)
        self.commits.append((cid, image))
        # Docker keeps the container's config, its labels with it
        self.images[image] = {**self.images.get(c.spec.image, {}), **c.spec.labels}
        self._image_fs[image] = (dict(c.files), dict(c.modes), set(c.dirs))

    async def pull(self, image: str, auth: dict[str, str] | None = None) -> None:
        self._called("pull")
        self.pulls.append((image, auth))
        if image not in self.pullable:
            raise EngineError(f"pulling {image!r} failed: manifest unknown")
        self.images.setdefault(image, {})
        self.usage.note_pull(image)

    # Images: each name is an image of its own, whose id is "id-" + the name.
    async def list_images(self, label: str | None = None) -> list[ImageInfo]:
        self._called("list_images")
        key, has_value, value = (label or "").partition("=")
        return [
            ImageInfo(f"id-{name}", [image_ref(name)], dict(labels))
            for name, labels in self.images.items()
            if not label or (key in labels and (not has_value or labels[key] == value))
        ]

    async def images_in_use(self) -> set[str]:
        self._called("images_in_use")
        return {f"id-{c.spec.image}" for c in self.containers.values() if c.state != "removed"}

    async def remove_image(self, image: str) -> bool:
        self._called("remove_image")
        name = next((n for n in self.images if image_ref(n) == image_ref(image)), None)
        if name is None or f"id-{name}" in await self.images_in_use():
            return False
        del self.images[name]
        self.removed_images.append(image)
        return True

    async def seal_network(self, seal: SealConfig) -> bool:
        self._called("seal_network")
        self.seals.append(seal)
        if self.seal_fails is not None:
            self.network = None
            raise NetworkUnavailable(f"sealing its network failed: {self.seal_fails}")
        self.network = seal.network
        return len(self.seals) == 1

    def open_network(self) -> None:
        self._called("open_network")
        self.network = "bridge"

    async def close(self) -> None:
        """Closes the client (again: nothing); the programs still running end with it."""
        if self.closed:
            return
        self._called("close")
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- inside ---------------------------------------------------------------------------
    def _called(self, name: str) -> None:
        self.calls.append(name)
        if self.only is not None and name not in self.only:
            raise AssertionError(f"unexpected engine call {name}")
        if self.closed:
            raise AssertionError(f"engine call {name} after close")

    def _container(self, cid: str) -> FakeContainer:
        c = self.containers.get(cid)
        if c is None or c.state == "removed":
            raise EngineError(f"no such container: {cid}")
        return c

    def _create(self, spec: ContainerSpec, job: bool) -> str:
        if spec.network and self.network is None:
            raise NetworkUnavailable(
                f"this node gives containers no network access: sealing its network failed: {self.seal_fails}"
            )
        if spec.image not in self.images:
            raise ImageNotFound(f"image {spec.image!r} is not present on this node")
        cid = f"cid-{next(self._ids)}"
        c = FakeContainer(cid, spec, job, self._signal)
        if spec.image in self._image_fs:  # a committed image: the files it was committed with
            files, modes, dirs = self._image_fs[spec.image]
            c.files, c.modes, c.dirs = dict(files), dict(modes), set(dirs)
        self.containers[cid] = c
        self.created.append(spec)
        self.starts_by_kind["job" if job else container_kind(spec)] += 1
        self.usage.note_use(spec.image)
        self._signal.notify()
        return cid

    def _log(self, cid: str) -> list[tuple[int, bytes]]:
        c = self._container(cid)
        if not c.spec.keep_logs:
            raise EngineError(f"container {cid} keeps no logs (ContainerSpec.keep_logs)")
        return c.log

    async def _run(self, c: FakeContainer, program: Program | None) -> None:
        process = Process(c, list(c.spec.cmd), dict(c.spec.env), c.spec.workdir or "/", c._stdin)
        try:
            code = 0 if program is None else await program(process)
        except Exit as stop:
            code = stop.code
        except Exception as exc:  # a program's bug: the process "crashes", the test can see it
            self.crashes.append(exc)
            c.output(STDERR, "".join(traceback.format_exception(exc)).encode())
            code = 1
        c.exited(code)


if TYPE_CHECKING:  # mypy: the fake is an Engine, its attach streams are Attached
    _engine: Engine = FakeEngine()
