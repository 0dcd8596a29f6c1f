"""The dashboard's static files, read once into memory: each with its type, an ETag and, for
text worth it, a gzip copy. Only the files found under the directory at start are served, by
their exact relative path (nothing a request names is ever opened on disk)."""

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"

# Not served: notes for the people who vendor the files.
_SKIP_SUFFIXES = (".md",)
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".txt": "text/plain",
    ".json": "application/json",
}
_GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    gzipped: bytes | None = None


def load_assets(root: Path = STATIC_DIR) -> dict[str, Asset]:
    """``relative/path`` → :class:`Asset`, for every file under ``root``."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in _SKIP_SUFFIXES:
            continue
        body = path.read_bytes()
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or path.name in ("LICENSE", "NOTICE"):
            ctype = ctype if ctype.startswith("text/") else "text/plain"
        compressible = ctype.startswith("text/") or ctype in ("application/json", "image/svg+xml")
        packed = gzip.compress(body, mtime=0) if compressible and len(body) >= _GZIP_MIN_BYTES else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(body, ctype, etag, packed)
    return assets
