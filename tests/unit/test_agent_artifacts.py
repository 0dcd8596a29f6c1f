import io
import tarfile
from pathlib import Path
from typing import cast

import pytest
from nats.js.object_store import ObjectStore

from node_agent.containers.artifacts import ArtifactCache, call_tar, code_tar_body, skeleton_tar
from node_agent.errors import BadArtifact
from node_agent.outcome import parse_result
from tests.fakes.objects import FakeObjectStore
from tests.functions import DICE, targz_bytes, zip_bytes


def _members(tar: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else None
    return out


@pytest.mark.parametrize("pack", [zip_bytes, targz_bytes])
def test_code_lands_under_the_runtime_path_with_the_call_files(pack) -> None:  # type: ignore[no-untyped-def]
    body = code_tar_body(pack(DICE), "/srv/fn")
    tar = call_tar(body, {"/faas/params.json": (b'{"a":1}', 0o644), "/faas/run.sh": (b"#!/bin/sh\n", 0o755)})
    members = _members(tar)
    assert members["srv/fn/test.py"] == DICE["test.py"].encode()
    assert members["srv/fn/requirements.txt"] == DICE["requirements.txt"].encode()
    assert members["faas/params.json"] == b'{"a":1}'
    # The path itself is in the tar; its parents are not (Docker makes missing ones, and an
    # existing one such as /srv or /tmp keeps its owner and mode).
    assert "srv/fn" in members and "srv" not in members


def _owners(tar: bytes) -> set[tuple[str, int, int]]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return {(m.name, m.uid, m.gid) for m in tf.getmembers()}


@pytest.mark.parametrize("pack", [zip_bytes, targz_bytes])
def test_everything_copied_in_belongs_to_the_call_user(pack) -> None:  # type: ignore[no-untyped-def]
    body = code_tar_body(pack(DICE), "/app", owner=(10001, 10002))
    tar = call_tar(body, {"/faas/run.sh": (b"#!/bin/sh\n", 0o755)}, owner=(10001, 10002))
    assert _owners(tar) == {
        (name, 10001, 10002) for name in ("app", "app/test.py", "app/requirements.txt", "faas", "faas/run.sh")
    }
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        modes = {m.name: m.mode for m in tf.getmembers()}
    assert modes["app"] == modes["faas"] == 0o755 and modes["faas/run.sh"] == 0o755


def test_a_skeleton_is_the_call_users_empty_directories() -> None:
    tar = skeleton_tar(["/srv/fn/", "/faas", "/"], owner=(10001, 10001))
    assert _owners(tar) == {("srv/fn", 10001, 10001), ("faas", 10001, 10001)}
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert all(m.isdir() and m.mode == 0o755 for m in tf.getmembers())


def test_body_has_no_end_marker_so_call_files_follow_it() -> None:
    body = code_tar_body(zip_bytes({"a.py": "x"}), "/app")
    assert len(body) % 512 == 0
    assert body[-1024:] != b"\0" * 1024


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "a/../../b"])
def test_escaping_entries_are_refused(name: str) -> None:
    with pytest.raises(BadArtifact, match="escapes"):
        code_tar_body(zip_bytes({name: "x"}), "/app")


def test_symlink_out_of_the_function_is_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        link = tarfile.TarInfo("data")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc"
        tf.addfile(link)
    with pytest.raises(BadArtifact, match="symlink"):
        code_tar_body(buf.getvalue(), "/app")


def test_not_an_archive() -> None:
    with pytest.raises(BadArtifact, match="neither"):
        code_tar_body(b"hello", "/app")


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        (b"[4,6,4,3]\n", [4, 6, 4, 3]),
        (b'{"a": "\xc3\xa9"}', {"a": "é"}),
        (b"plain text\n", "plain text"),
        (b"", None),
        (b"  42 ", 42),
        (b"null", None),
    ],
)
def test_stdout_is_json_when_it_parses(stdout: bytes, expected: object) -> None:
    assert parse_result(stdout) == expected


def _cache(tmp_path: Path, max_bytes: int) -> tuple[ArtifactCache, FakeObjectStore, list[str]]:
    store = FakeObjectStore()
    # Three archives whose bodies differ in size (a file of 10, 20 and 40 KB).
    digests = [store.put(zip_bytes({"f.bin": "x" * (10_000 * 2**i)})) for i in range(3)]
    return ArtifactCache(cast(ObjectStore, store), tmp_path / "cache", max_bytes), store, digests


async def test_code_bodies_in_memory_are_bounded_in_bytes_least_recently_used_out(tmp_path: Path) -> None:
    probe, _, digests = _cache(tmp_path / "probe", 1 << 30)
    sizes = [len(await probe.code_body(d, "/app")) for d in digests]
    # Room for the two largest bodies, not for all three.
    cache, _, _ = _cache(tmp_path, sizes[1] + sizes[2])
    for d in digests:
        await cache.code_body(d, "/app")
    # 10 + 20 + 40 KB is over the cap: the oldest (10 KB) went, whatever the count.
    assert cache.held_bytes == sizes[1] + sizes[2] <= cache.max_bytes
    assert [k[0] for k in cache._bodies] == digests[1:]
    await cache.code_body(digests[1], "/app")  # used again: now the most recent
    await cache.code_body(digests[0], "/app")  # back in: the least recently used goes
    assert [k[0] for k in cache._bodies] == [digests[1], digests[0]]
    assert cache.held_bytes == sizes[0] + sizes[1]


async def test_a_body_larger_than_the_cap_is_built_but_not_kept(tmp_path: Path) -> None:
    cache, _, digests = _cache(tmp_path, 15_000)
    small = await cache.code_body(digests[0], "/app")
    big = await cache.code_body(digests[2], "/app")
    assert len(big) > cache.max_bytes
    assert [k[0] for k in cache._bodies] == [digests[0]] and cache.held_bytes == len(small)


async def test_an_artifact_gone_from_the_object_store_is_a_bad_artifact_not_a_crash(tmp_path: Path) -> None:
    cache, store, digests = _cache(tmp_path, 1 << 20)
    del store.objects[digests[0]]
    with pytest.raises(BadArtifact, match="no longer in the object store"):
        await cache.code_body(digests[0], "/app")
