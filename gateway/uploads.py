"""Reading a multipart/form-data upload: a ``module`` file and small text fields."""

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from gateway.errors import bad_request, too_large

_FIELD_LIMIT = 64 * 1024
_CHUNK = 1 << 16


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    module: bytes | None = None


async def read_upload(request: web.Request, max_module_bytes: int, file_field: str = "module") -> Upload:
    """Stream the parts, refusing the upload (413) as soon as the file passes its limit."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request(f"expected a multipart/form-data body with a {file_field!r} file field")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as err:
        raise bad_request(f"malformed multipart body: {err}") from None
    upload = Upload()
    while True:
        try:
            part = await reader.next()
        except ValueError as err:
            raise bad_request(f"malformed multipart body: {err}") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise bad_request("malformed multipart body: every part needs a name")
        if part.name == file_field:
            upload.module = await _read_part(part, max_module_bytes, file_field, status_413=True)
        else:
            raw = await _read_part(part, _FIELD_LIMIT, part.name, status_413=False)
            try:
                upload.fields[part.name] = raw.decode()
            except UnicodeDecodeError:
                raise bad_request(f"field {part.name!r} is not UTF-8 text") from None
    return upload


async def _read_part(part: BodyPartReader, limit: int, name: str, status_413: bool) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            message = f"{name} is larger than the limit of {limit} bytes"
            raise too_large(message) if status_413 else bad_request(message)
    return bytes(buf)
