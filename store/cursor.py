"""Opaque page cursors: a tag and a value, base64url without padding.

The tag ties a cursor to the listing that made it: a calls cursor passed to the jobs listing
is refused like any other garbage (:class:`store.errors.BadRequest`).
"""

import base64
import binascii

from store.errors import BadRequest


def pack(tag: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{tag}:{value}".encode()).decode().rstrip("=")


def unpack(tag: str, cursor: str) -> str:
    """The value of a cursor made by ``pack(tag, ...)``; raises BadRequest otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(cursor) from None
    if not raw.startswith(f"{tag}:"):
        raise invalid(cursor)
    return raw.removeprefix(f"{tag}:")


def invalid(cursor: str) -> BadRequest:
    return BadRequest(f"invalid cursor {cursor!r}: pass a next_cursor from a previous page")
