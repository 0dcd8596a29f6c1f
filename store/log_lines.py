"""A chunk's log lines as stored: the JSON array a LogPage carries, encoded by the schemas
models (no hand-rolled JSON)."""

from pydantic import TypeAdapter

from schemas import LogEntry
from schemas.codec import decode_as

_LINES: TypeAdapter[list[LogEntry]] = TypeAdapter(list[LogEntry])


def encode_lines(lines: list[LogEntry]) -> bytes:
    return _LINES.dump_json(lines)


def decode_lines(data: str | bytes) -> list[LogEntry]:
    """Raises ``schemas.InvalidMessage`` (a corrupt row)."""
    return decode_as(_LINES, data)
