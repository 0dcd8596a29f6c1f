"""Validation of an uploaded function archive (pure: bytes in, verdict out).

The format is found from the content (magic bytes), never from a file name. Code and
``requirements.txt`` / ``package.json`` belong at the archive root: an archive whose content
is wrapped in one top-level directory is accepted but its dependencies file is not looked
for inside that directory (and the runtime's ``run`` command will not find the code).

Rejected: anything that is not a zip or a gzip-compressed tar; entries with absolute paths
or ``..`` components; symlinks or hardlinks that point outside the archive; device files and
FIFOs; archives that expand past ``max_uncompressed`` bytes (sizes as the archive declares
them, which is what Python's extractors honour; tar headers and padding count too).
"""

import io
import json
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Literal

ArchiveFormat = Literal["zip", "tar.gz"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty zip's end record
_GZIP_MAGIC = b"\x1f\x8b"
_TAR_BLOCK = 512
_DRIVE = re.compile(r"^[A-Za-z]:/")
_MAX_ENTRIES = 100_000
_SPECIAL = {stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK}
_MAX_MANIFEST_BYTES = 1 << 20


class ArchiveError(ValueError):
    """The archive is refused; the message says why (and names the entry)."""


@dataclass(frozen=True)
class ArchiveInfo:
    format: ArchiveFormat
    has_dependencies: bool
    entries: int
    uncompressed_size: int


def detect_format(data: bytes) -> ArchiveFormat:
    if data.startswith(_ZIP_MAGIC):
        return "zip"
    if data.startswith(_GZIP_MAGIC):
        return "tar.gz"
    raise ArchiveError("the module is neither a zip nor a tar.gz archive (checked by content, not by name)")


def validate_archive(data: bytes, max_uncompressed: int) -> ArchiveInfo:
    """Check ``data`` and tell its format and whether it declares dependencies to install."""
    fmt = detect_format(data)
    try:
        if fmt == "zip":
            return _validate_zip(data, max_uncompressed)
        return _validate_tar_gz(data, max_uncompressed)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, UnicodeDecodeError) as err:
        raise ArchiveError(f"corrupt {fmt} archive: {err}") from None


def _is_absolute(path: str) -> bool:
    """``/x``, or a Windows drive path ``C:/x`` (backslashes already turned into slashes)."""
    return path.startswith("/") or bool(_DRIVE.match(path))


def _entry_path(name: str) -> str:
    """The entry's normalised relative path; refuses absolute paths and ``..`` components."""
    if "\x00" in name:
        raise ArchiveError(f"entry {name!r} has a NUL character in its name")
    unified = name.replace("\\", "/")
    if _is_absolute(unified):
        raise ArchiveError(f"entry {name!r} has an absolute path")
    if ".." in unified.split("/"):
        raise ArchiveError(f"entry {name!r} has a '..' component")
    return posixpath.normpath(unified).removeprefix("./") if unified not in ("", ".", "./") else "."


def _check_link(name: str, target: str, relative_to_entry: bool) -> None:
    """A symlink resolves from its own directory, a tar hardlink from the archive root."""
    unified = target.replace("\\", "/")
    if not unified or _is_absolute(unified):
        raise ArchiveError(f"link {name!r} points outside the archive ({target!r})")
    base = posixpath.dirname(name) if relative_to_entry else ""
    resolved = posixpath.normpath(posixpath.join(base, unified))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"link {name!r} points outside the archive ({target!r})")


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.entries = 0

    def add(self, size: int) -> None:
        self.used += size
        self.entries += 1
        if self.used > self.limit:
            raise ArchiveError(f"archive expands to more than {self.limit} bytes")
        if self.entries > _MAX_ENTRIES:
            raise ArchiveError(f"archive has more than {_MAX_ENTRIES} entries")


def _validate_zip(data: bytes, max_uncompressed: int) -> ArchiveInfo:
    budget = _Budget(max_uncompressed)
    manifests: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            path = _entry_path(info.filename)
            budget.add(info.file_size)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                if info.file_size > 4096:
                    raise ArchiveError(f"link {info.filename!r} has an oversized target")
                _check_link(path, zf.read(info).decode(), relative_to_entry=True)
            elif stat.S_IFMT(mode) in _SPECIAL:
                raise ArchiveError(f"entry {info.filename!r} is a device file or FIFO")
            elif path in _MANIFESTS and not info.is_dir():
                with zf.open(info) as f:
                    manifests[path] = f.read(_MAX_MANIFEST_BYTES + 1)
    return _info("zip", budget, manifests)


def _validate_tar_gz(data: bytes, max_uncompressed: int) -> ArchiveInfo:
    budget = _Budget(max_uncompressed)
    manifests: dict[str, bytes] = {}
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    except tarfile.ReadError as err:
        raise ArchiveError(f"gzip data that is not a tar archive: {err}") from None
    with tf:
        # tarfile.next() reads one header at a time: the budget stops a bomb before its data
        # is decompressed while seeking to the next header.
        while (member := tf.next()) is not None:
            path = _entry_path(member.name)
            budget.add(_TAR_BLOCK + -(-member.size // _TAR_BLOCK) * _TAR_BLOCK)
            if member.issym():
                _check_link(path, member.linkname, relative_to_entry=True)
            elif member.islnk():
                _check_link(path, member.linkname, relative_to_entry=False)
            elif member.isdev():
                raise ArchiveError(f"entry {member.name!r} is a device file or FIFO")
            elif member.isfile() and path in _MANIFESTS:
                f = tf.extractfile(member)
                if f is not None:
                    manifests[path] = f.read(_MAX_MANIFEST_BYTES + 1)
    return _info("tar.gz", budget, manifests)


def _requirements_declare(content: bytes) -> bool:
    for line in content.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return True
    return False


def _package_json_declares(content: bytes) -> bool:
    try:
        # Archive content, not a NATS payload.
        manifest = json.loads(content)
    except ValueError as err:
        raise ArchiveError(f"package.json is not valid JSON: {err}") from None
    deps = manifest.get("dependencies") if isinstance(manifest, dict) else None
    return bool(deps)


_MANIFESTS = {"requirements.txt": _requirements_declare, "package.json": _package_json_declares}


def _info(fmt: ArchiveFormat, budget: _Budget, manifests: dict[str, bytes]) -> ArchiveInfo:
    if budget.entries == 0:
        raise ArchiveError("the archive is empty")
    for name, content in manifests.items():
        if len(content) > _MAX_MANIFEST_BYTES:
            raise ArchiveError(f"{name} is larger than {_MAX_MANIFEST_BYTES} bytes")
    has_deps = any(_MANIFESTS[name](content) for name, content in manifests.items())
    return ArchiveInfo(fmt, has_deps, budget.entries, budget.used)
