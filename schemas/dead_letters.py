"""Dead letters as the store answers them over request/reply: events it set aside because
they did not decode or the database refused them (README "Limits and retention")."""

from datetime import datetime

from pydantic import BaseModel, Field

# A reply carries at most this much of each payload (base64), so that a page fits a message.
PAYLOAD_PREVIEW_BYTES = 4096


class DeadLetterQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class DeadLetterRecord(BaseModel):
    stream: str
    sequence: int
    subject: str
    deliveries: int
    error: str
    at: datetime
    # The payload's size, and its first PAYLOAD_PREVIEW_BYTES bytes in base64.
    size: int
    payload_base64: str
    payload_truncated: bool = False


class DeadLetterPage(BaseModel):
    """Newest first (by stream sequence)."""

    items: list[DeadLetterRecord]
    next_cursor: str | None = None
