"""Reading a multipart/form-data upload: one ``module`` file and a few small text fields.

Everything in it is bounded: the file by ``max_module_bytes`` (413), each text field by
``max_field_bytes`` (413), the number of parts by ``max_parts`` (400); a name given twice,
and whatever aiohttp's multipart reader cannot parse (bad part headers, a bad transfer
encoding, an unknown charset), is a 400.
"""

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import bad_request, too_large

DEFAULT_FIELD_BYTES = 64 * 1024
DEFAULT_PARTS = 16
_CHUNK = 1 << 16
# What aiohttp raises on a part it cannot read (InvalidHeader and LineTooLong are
# HttpProcessingErrors; a bad base64 part is a binascii.Error, a ValueError).
_MALFORMED = (ValueError, AssertionError, LookupError, HttpProcessingError)


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    module: bytes | None = None


@dataclass(frozen=True)
class UploadLimits:
    max_module_bytes: int
    max_field_bytes: int = DEFAULT_FIELD_BYTES
    max_parts: int = DEFAULT_PARTS


async def read_upload(request: web.Request, limits: UploadLimits, file_field: str = "module") -> Upload:
    """Stream the parts, refusing the upload as soon as one passes its limit."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request(f"expected a multipart/form-data body with a {file_field!r} file field")
    try:
        return await _read(request, limits, file_field)
    except _MALFORMED as err:
        raise bad_request(f"malformed multipart body: {_describe(err)}") from None


async def _read(request: web.Request, limits: UploadLimits, file_field: str) -> Upload:
    reader = await request.multipart()
    upload = Upload()
    seen: set[str] = set()
    while (part := await reader.next()) is not None:
        if len(seen) >= limits.max_parts:
            raise bad_request(f"the upload has more than {limits.max_parts} parts")
        if not isinstance(part, BodyPartReader) or not part.name:
            raise bad_request("malformed multipart body: every part needs a name")
        if part.name in seen:
            raise bad_request(f"part {part.name[:100]!r} is given more than once")
        seen.add(part.name)
        if part.name == file_field:
            upload.module = await _read_part(part, limits.max_module_bytes, file_field)
        else:
            raw = await _read_part(part, limits.max_field_bytes, part.name)
            try:
                upload.fields[part.name] = raw.decode()
            except UnicodeDecodeError:
                raise bad_request(f"field {part.name[:100]!r} is not UTF-8 text") from None
    return upload


async def _read_part(part: BodyPartReader, limit: int, name: str) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise too_large(f"{name[:100]} is larger than the limit of {limit} bytes")
    return bytes(buf)


def _describe(err: BaseException) -> str:
    if isinstance(err, HttpProcessingError):
        return " ".join(err.message.split())[:200]
    return " ".join(str(err).split())[:200] or type(err).__name__
