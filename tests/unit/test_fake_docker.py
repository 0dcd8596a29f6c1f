"""The fake Docker engine (tests/fakes/docker.py) behaves as the agent expects Docker to."""

import asyncio

import pytest

from node_agent.containers.artifacts import call_tar
from node_agent.containers.config import ContainerSpec
from node_agent.errors import EngineError, ImageNotFound, StreamClosed
from tests.fakes.container import KILLED, PIPE_BYTES, STDERR, STDOUT, Process, emits
from tests.fakes.docker import FakeEngine


async def shout(p: Process) -> int:
    """Echoes stdin lines in capitals until EOF, then exits 4."""
    while line := await p.readline():
        await p.out(line.upper())
    await p.err(b"bye\n")
    return 4


async def test_put_archive_unpacks_the_tar_into_the_containers_files() -> None:
    engine = FakeEngine(images={"img"})
    with pytest.raises(ImageNotFound):
        await engine.create(ContainerSpec(image="other", cmd=[]))
    cid = await engine.create(ContainerSpec(image="img", cmd=["sh"], labels={"a": "1"}))
    await engine.put_archive(cid, "/", call_tar(b"", {"/faas/run.sh": (b"#!/bin/sh\n", 0o755)}))
    c = engine.containers[cid]
    assert c.files == {"/faas/run.sh": b"#!/bin/sh\n"} and c.modes["/faas/run.sh"] == 0o755
    assert c.is_dir("/faas") and not c.is_dir("/app")
    assert engine.created == [c.spec] and engine.calls == ["create", "create", "put_archive"]


async def test_an_attached_container_reads_stdin_and_its_output_comes_in_frames() -> None:
    engine = FakeEngine(shout, images={"img"})
    cid = await engine.create(ContainerSpec(image="img", cmd=[], stdin=True))
    attached = await engine.attach(cid)
    await engine.start(cid)
    await attached.write(b"hello\n")
    assert await attached.read() == (STDOUT, b"HELLO\n")
    engine.containers[cid].close_stdin()
    assert await attached.read() == (STDERR, b"bye\n")
    assert await attached.read() is None and await attached.read() is None  # ended, and stays so
    assert await engine.wait(cid) == 4
    with pytest.raises(StreamClosed):
        await attached.write(b"late\n")
    assert engine.containers[cid].stdin_bytes == b"hello\n"


async def test_stdin_is_closed_unless_the_spec_opens_it() -> None:
    engine = FakeEngine(emits([], forever=True), images={"img"})
    cid = await engine.create(ContainerSpec(image="img", cmd=[]))
    attached = await engine.attach(cid)
    await engine.start(cid)
    with pytest.raises(StreamClosed):
        await attached.write(b"x")
    await engine.remove(cid)


async def test_output_nobody_reads_blocks_the_container_as_a_pipe_does() -> None:
    async def flood(p: Process) -> int:
        while True:
            await p.out(b"x" * 65536)

    engine = FakeEngine(flood, images={"img"})
    cid = await engine.create(ContainerSpec(image="img", cmd=[]))
    attached = await engine.attach(cid)
    await engine.start(cid)
    for _ in range(100):
        await asyncio.sleep(0)
    c = engine.containers[cid]
    assert PIPE_BYTES <= c.written[STDOUT] <= PIPE_BYTES + 65536
    await attached.read()
    await attached.read()
    for _ in range(10):
        await asyncio.sleep(0)
    assert c.written[STDOUT] > PIPE_BYTES + 65536  # reading lets it go on
    await engine.remove(cid)


async def test_remove_kills_the_program_ends_its_streams_and_records_the_grace() -> None:
    engine = FakeEngine(emits([(STDOUT, b"working\n")], forever=True), images={"img"})
    cid = await engine.create_job(ContainerSpec(image="img", cmd=[]))
    await engine.start(cid)
    await engine.until(lambda: engine.containers[cid].log)
    assert [frame async for frame in engine.follow_output(cid, follow=False)] == [(STDOUT, b"working\n")]

    async def follow() -> list[tuple[int, bytes]]:
        return [frame async for frame in engine.follow_output(cid)]

    waiting, followed = asyncio.create_task(engine.wait(cid)), asyncio.create_task(follow())
    await asyncio.sleep(0.01)
    assert not waiting.done() and not followed.done()
    await engine.remove(cid, 3)
    assert await waiting == KILLED and await followed == [(STDOUT, b"working\n")]
    await engine.remove(cid)  # already gone is fine
    assert engine.removals == [(cid, 3), (cid, 0)] and engine.live == []
    with pytest.raises(EngineError):
        await engine.exit_state(cid)


async def test_logs_commits_labels_and_the_calls_allowed() -> None:
    engine = FakeEngine(emits([(STDOUT, b"a" * 10), (STDERR, b"b" * 3)], exit_code=0), images={"img": {"k": "v"}})
    cid = await engine.create(ContainerSpec(image="img", cmd=[], labels={"faas.node": "n1"}))
    await engine.put_archive(cid, "/opt", call_tar(b"", {"/lib.py": (b"x = 1\n", 0o644)}))
    await engine.start(cid)
    assert await engine.wait(cid) == 0
    out = await engine.output(cid, max_bytes=4)
    assert (out.stdout, out.stderr, out.stdout_truncated, out.stderr_truncated) == (b"aaaa", b"bbb", True, False)
    await engine.commit(cid, "img-committed:1")
    # As Docker: the image's labels and the container's
    assert await engine.image_labels("img-committed:1") == {"k": "v", "faas.node": "n1"}
    again = await engine.create(ContainerSpec(image="img-committed:1", cmd=[], keep_logs=False))
    assert engine.containers[again].files == {"/opt/lib.py": b"x = 1\n"}
    with pytest.raises(EngineError, match="keeps no logs"):
        await engine.output(again, 10)
    assert await engine.remove_labelled("faas.node=n1") == 1 and engine.live == [again]
    await engine.remove(again)

    strict = FakeEngine(only={"remove"})
    await strict.remove("anything")
    with pytest.raises(AssertionError, match="unexpected engine call create"):
        await strict.create(ContainerSpec(image="img", cmd=[]))
