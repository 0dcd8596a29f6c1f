import io
import tarfile

import pytest

from node_agent.containers.artifacts import call_tar, code_tar_body, skeleton_tar
from node_agent.errors import BadArtifact
from node_agent.outcome import parse_result
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
