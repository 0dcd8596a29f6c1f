"""gateway.archive: format by content, unsafe entries, bombs, dependency detection."""

import gzip
import io
import stat
import tarfile
import zipfile
from collections.abc import Callable

import pytest

from gateway.archive import ArchiveError, detect_format, validate_archive

LIMIT = 1 << 20
Builder = Callable[..., bytes]


def make_zip(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def make_tgz(
    files: dict[str, bytes],
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
    devices: list[str] | None = None,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.LNKTYPE
            info.linkname = target
            tf.addfile(info)
        for name in devices or []:
            info = tarfile.TarInfo(name)
            info.type = tarfile.CHRTYPE
            tf.addfile(info)
    return buf.getvalue()


CODE = {"main.py": b"print('hi')\n"}


def test_zip_is_recognised_by_content() -> None:
    info = validate_archive(make_zip(CODE), LIMIT)
    assert info.format == "zip"
    assert not info.has_dependencies
    assert info.entries == 1


def test_tar_gz_is_recognised_by_content() -> None:
    info = validate_archive(make_tgz({**CODE, "lib/util.py": b"x = 1\n"}), LIMIT)
    assert info.format == "tar.gz"
    assert info.entries == 2


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"#!/bin/sh\necho hi\n", b"\x89PNG\r\n\x1a\n...."],
    ids=["empty", "text", "script", "png"],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ArchiveError, match=r"neither a zip nor a tar\.gz"):
        detect_format(data)
    with pytest.raises(ArchiveError, match=r"neither a zip nor a tar\.gz"):
        validate_archive(data, LIMIT)


def test_gzip_that_is_not_a_tar_is_refused() -> None:
    with pytest.raises(ArchiveError, match="not a tar"):
        validate_archive(gzip.compress(b"just some text, not a tar archive" * 20), LIMIT)


def test_plain_tar_without_gzip_is_refused() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("main.py")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="neither"):
        validate_archive(buf.getvalue(), LIMIT)


def test_truncated_zip_is_refused() -> None:
    with pytest.raises(ArchiveError, match="corrupt zip"):
        validate_archive(make_zip(CODE)[:30], LIMIT)


def test_empty_archive_is_refused() -> None:
    with pytest.raises(ArchiveError, match="empty"):
        validate_archive(make_zip({}), LIMIT)


@pytest.mark.parametrize("make", [make_zip, make_tgz], ids=["zip", "tgz"])
@pytest.mark.parametrize("name", ["/etc/passwd", "C:/Windows/x.py"])
def test_absolute_paths_are_refused(make: Builder, name: str) -> None:
    with pytest.raises(ArchiveError, match="absolute path") as exc:
        validate_archive(make({name: b"x"}), LIMIT)
    assert name in str(exc.value)


@pytest.mark.parametrize("make", [make_zip, make_tgz], ids=["zip", "tgz"])
@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "a\\..\\evil.py"])
def test_dotdot_components_are_refused(make: Builder, name: str) -> None:
    with pytest.raises(ArchiveError, match=r"'\.\.' component"):
        validate_archive(make({name: b"x"}), LIMIT)


def test_dots_inside_names_are_fine() -> None:
    assert validate_archive(make_tgz({"a..b.py": b"", "./main.py": b"", "x/./y.py": b""}), LIMIT).entries == 3


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "sub/../../outside"])
def test_tar_symlink_escaping_is_refused(target: str) -> None:
    with pytest.raises(ArchiveError, match="points outside"):
        validate_archive(make_tgz(CODE, symlinks={"link": target}), LIMIT)


def test_tar_symlink_escaping_from_a_subdirectory_is_refused() -> None:
    with pytest.raises(ArchiveError, match="points outside"):
        validate_archive(make_tgz(CODE, symlinks={"lib/link": "../../x"}), LIMIT)


def test_tar_symlink_inside_is_fine() -> None:
    data = make_tgz({**CODE, "lib/a.py": b""}, symlinks={"lib/link": "../main.py", "b": "lib/a.py"})
    assert validate_archive(data, LIMIT).entries == 4


def test_tar_hardlink_escaping_is_refused() -> None:
    with pytest.raises(ArchiveError, match="points outside"):
        validate_archive(make_tgz(CODE, hardlinks={"h": "../../etc/shadow"}), LIMIT)


def test_tar_hardlink_inside_is_fine() -> None:
    assert validate_archive(make_tgz(CODE, hardlinks={"lib/h": "main.py"}), LIMIT).entries == 2


def test_zip_symlink_escaping_is_refused() -> None:
    with pytest.raises(ArchiveError, match="points outside"):
        validate_archive(make_zip(CODE, symlinks={"link": "../../etc/passwd"}), LIMIT)


def test_zip_symlink_inside_is_fine() -> None:
    assert validate_archive(make_zip(CODE, symlinks={"link": "main.py"}), LIMIT).entries == 2


def test_device_files_are_refused() -> None:
    with pytest.raises(ArchiveError, match="device"):
        validate_archive(make_tgz(CODE, devices=["dev/tty"]), LIMIT)


def test_zip_bomb_over_the_limit_is_refused() -> None:
    # 2 MiB of zeros deflate to a couple of KiB: well under the upload limit, over the expansion limit.
    data = make_zip({"zeros.bin": b"\0" * (2 * LIMIT)})
    assert len(data) < 10_000
    with pytest.raises(ArchiveError, match="expands to more than"):
        validate_archive(data, LIMIT)


def test_tar_bomb_over_the_limit_is_refused() -> None:
    data = make_tgz({"zeros.bin": b"\0" * (2 * LIMIT)})
    assert len(data) < 10_000
    with pytest.raises(ArchiveError, match="expands to more than"):
        validate_archive(data, LIMIT)


def test_tar_bomb_is_refused_from_its_header_without_decompressing() -> None:
    # A header claiming 1 TiB followed by nothing: refused from the header alone.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("huge.bin")
        info.size = 1 << 40
        tf.addfile(info)  # no data: the archive lies about the size
    with pytest.raises(ArchiveError, match="expands to more than"):
        validate_archive(buf.getvalue(), LIMIT)


def test_many_small_files_count_against_the_limit() -> None:
    files = {f"f{i}.txt": b"" for i in range(300)}  # 300 tar headers of 512 bytes each
    validate_archive(make_tgz(files), 300 * 512)
    with pytest.raises(ArchiveError, match="expands to more than"):
        validate_archive(make_tgz(files), 299 * 512)


@pytest.mark.parametrize("make", [make_zip, make_tgz], ids=["zip", "tgz"])
@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"requirements.txt": b"requests==2.31\n"}, True),
        ({"./requirements.txt": b"# pinned\n\nnumpy\n"}, True),
        ({"requirements.txt": b"# nothing yet\n\n   \n"}, False),
        ({"requirements.txt": b""}, False),
        ({"sub/requirements.txt": b"requests\n"}, False),
        ({"package.json": b'{"name": "f", "dependencies": {"lodash": "^4"}}'}, True),
        ({"package.json": b'{"name": "f", "dependencies": {}}'}, False),
        ({"package.json": b'{"name": "f", "devDependencies": {"jest": "1"}}'}, False),
        ({"lib/package.json": b'{"dependencies": {"lodash": "^4"}}'}, False),
        ({}, False),
    ],
    ids=[
        "req",
        "req-comments",
        "req-only-comments",
        "req-empty",
        "req-nested",
        "pkg",
        "pkg-empty-deps",
        "pkg-dev-only",
        "pkg-nested",
        "none",
    ],
)
def test_has_dependencies(make: Builder, files: dict[str, bytes], expected: bool) -> None:
    assert validate_archive(make({**CODE, **files}), LIMIT).has_dependencies is expected


def test_invalid_package_json_is_refused() -> None:
    with pytest.raises(ArchiveError, match=r"package\.json is not valid JSON"):
        validate_archive(make_zip({**CODE, "package.json": b"{nope"}), LIMIT)
