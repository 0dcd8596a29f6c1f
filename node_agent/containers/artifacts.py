"""Function archives: fetched from the object store by digest, cached on disk, and turned
into the tar that ``put_archive`` copies into a container.

The code tar is built once per (digest, path) and kept without its end-of-archive
blocks, so that a call only appends its own small members (params, entry script).

Every member belongs to the user calls run as (``Owner``, the agent's ``call_user``): Docker
keeps a tar's owners when it copies one in as root, so the function can read and write its
own directory and ``/faas``, and a warm container's shim, not root, can unpack a payload over
them. The parents of the runtime's path are not in the tar: Docker makes missing ones
(root's, 0755), and existing ones keep their owner and mode.
"""

import asyncio
import hashlib
import io
import logging
import posixpath
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path, PurePosixPath

from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from common.logs import fields
from node_agent.errors import BadArtifact

log = logging.getLogger(__name__)


def _safe_member(name: str) -> PurePosixPath | None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise BadArtifact(f"archive entry {name!r} escapes the function directory")
    parts = [x for x in p.parts if x not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


# Code tar bodies kept in memory, in bytes (the agent's FAAS_AGENT_ARTIFACT_CACHE_BYTES).
DEFAULT_BODY_BYTES = 64 << 20

# (uid, gid) of a tar's members.
Owner = tuple[int, int]
ROOT: Owner = (0, 0)


class _Writer:
    """Adds members to a tar, all owned by ``owner``."""

    def __init__(self, tf: tarfile.TarFile, owner: Owner) -> None:
        self.tf, self.owner = tf, owner

    def add(self, info: tarfile.TarInfo, data: bytes | None) -> None:
        info.uid, info.gid = self.owner
        info.uname = info.gname = ""
        self.tf.addfile(info, io.BytesIO(data) if data is not None else None)

    def directory(self, path: str, mode: int = 0o755) -> None:
        d = tarfile.TarInfo(path)
        d.type, d.mode = tarfile.DIRTYPE, mode
        self.add(d, None)


def code_tar_body(archive: bytes, dest: str, owner: Owner = ROOT) -> bytes:
    """The archive's files under ``dest`` (absolute), as tar members with no end marker."""
    root = PurePosixPath(dest.lstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        out = _Writer(tf, owner)
        if root.parts:  # the destination itself, the owner's (its parents: see above)
            out.directory(str(root))
        if archive[:4] == b"PK\x03\x04" or archive[:4] == b"PK\x05\x06":
            _zip_members(archive, root, out)
        elif archive[:2] == b"\x1f\x8b":
            _tar_members(archive, root, out)
        else:
            raise BadArtifact("artifact is neither a zip nor a tar.gz")
        body = buf.getvalue()[: tf.offset]
    return body


def _zip_members(archive: bytes, root: PurePosixPath, out: _Writer) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as err:
        raise BadArtifact(f"bad zip: {err}") from err
    with zf:
        for zi in zf.infolist():
            rel = _safe_member(zi.filename)
            if rel is None:
                continue
            info = tarfile.TarInfo(str(root / rel))
            mode = (zi.external_attr >> 16) & 0o7777
            if zi.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, mode or 0o755
                out.add(info, None)
            else:
                data = zf.read(zi)
                info.size, info.mode = len(data), mode or 0o644
                out.add(info, data)


def _tar_members(archive: bytes, root: PurePosixPath, out: _Writer) -> None:
    try:
        tf = tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BadArtifact(f"bad tar.gz: {err}") from err
    with tf:
        for m in tf.getmembers():
            rel = _safe_member(m.name)
            if rel is None:
                continue
            info = tarfile.TarInfo(str(root / rel))
            info.mode, info.mtime = m.mode, m.mtime
            if m.isdir():
                info.type = tarfile.DIRTYPE
                out.add(info, None)
            elif m.isfile():
                f = tf.extractfile(m)
                data = f.read() if f else b""
                info.size = len(data)
                out.add(info, data)
            elif m.issym():
                resolved = posixpath.normpath(str(rel.parent / m.linkname))
                if m.linkname.startswith("/") or resolved == ".." or resolved.startswith("../"):
                    raise BadArtifact(f"symlink {m.name!r} points outside the function")
                info.type, info.linkname = tarfile.SYMTYPE, m.linkname
                out.add(info, None)
            # Devices, fifos and hard links are dropped: the gateway refuses them at upload.


def call_tar(code_body: bytes, files: dict[str, tuple[bytes, int]], owner: Owner = ROOT) -> bytes:
    """``code_body`` plus ``files`` (absolute path -> (content, mode)), ended properly; the
    files and their directories (``/faas``) are ``owner``'s."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        out = _Writer(tf, owner)
        dirs: set[str] = set()
        for path, (data, mode) in files.items():
            rel = PurePosixPath(path.lstrip("/"))
            for i in range(1, len(rel.parts)):
                d = str(PurePosixPath(*rel.parts[:i]))
                if d not in dirs:
                    dirs.add(d)
                    out.directory(d)
            info = tarfile.TarInfo(str(rel))
            info.size, info.mode = len(data), mode
            out.add(info, data)
    return code_body + buf.getvalue()


def skeleton_tar(dirs: list[str], owner: Owner) -> bytes:
    """Empty directories (absolute paths) owned by ``owner``: what a warm container gets before
    it starts, so that its shim can unpack a function's code there without being root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        out = _Writer(tf, owner)
        for d in dirs:
            if rel := d.strip("/"):
                out.directory(rel)
    return buf.getvalue()


class ArtifactCache:
    """Archives by digest on local disk, and code tar bodies in memory: least recently used
    first out once they hold more than ``max_bytes`` (a body larger than that on its own is
    built for each use, not kept)."""

    def __init__(
        self, store: ObjectStore, cache_dir: Path, max_bytes: int = DEFAULT_BODY_BYTES, owner: Owner = ROOT
    ) -> None:
        self._store = store
        # whom the code belongs to in a container: the user calls run as
        self.owner = owner
        self._dir = cache_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self._bodies: OrderedDict[tuple[str, str, Owner], bytes] = OrderedDict()
        self.max_bytes = max_bytes
        # what the bodies in memory hold, in bytes (metrics, tests)
        self.held_bytes = 0
        self._locks: dict[str, asyncio.Lock] = {}

    async def archive(self, digest: str) -> bytes:
        path = self._dir / digest.replace(":", "-")
        if path.exists():
            return await asyncio.to_thread(path.read_bytes)
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if path.exists():
                return await asyncio.to_thread(path.read_bytes)
            try:
                result = await self._store.get(digest)
            except ObjectNotFoundError:
                # Removed with its version (the gateway keeps the last N): a call pinned to
                # it ends with an error, it is not retried.
                raise BadArtifact(f"artifact {digest} is no longer in the object store") from None
            data = result.data or b""
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                raise BadArtifact(f"artifact {digest} does not match its digest")
            tmp = path.with_suffix(".part")
            await asyncio.to_thread(tmp.write_bytes, data)
            tmp.replace(path)
            log.info("artifact.fetched", extra=fields(digest=digest[:19], size=len(data)))
        self._locks.pop(digest, None)
        return data

    async def code_body(self, digest: str, dest: str, owner: Owner | None = None) -> bytes:
        """The code tar body of ``digest`` at ``dest``, owned by ``owner`` (default: the call
        user)."""
        owner = self.owner if owner is None else owner
        key = (digest, dest, owner)
        body = self._bodies.get(key)
        if body is not None:
            self._bodies.move_to_end(key)
            return body
        archive = await self.archive(digest)
        body = await asyncio.to_thread(code_tar_body, archive, dest, owner)
        self._keep(key, body)
        return body

    def _keep(self, key: tuple[str, str, Owner], body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        old = self._bodies.pop(key, None)
        if old is not None:  # two calls built the same body at once
            self.held_bytes -= len(old)
        self._bodies[key] = body
        self.held_bytes += len(body)
        while self.held_bytes > self.max_bytes:
            _, evicted = self._bodies.popitem(last=False)
            self.held_bytes -= len(evicted)
