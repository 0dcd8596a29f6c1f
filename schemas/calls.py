"""Call records as the store keeps them and answers them over request/reply."""

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.events import CallbackOutcome, CallStatus, ErrorInfo, LogEntry, Served

# The largest call or job number (the store keeps numbers as signed 64-bit integers): one
# past it cannot exist, and is refused before it reaches a database.
MAX_NUMBER = (1 << 63) - 1
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d")  # how an RFC 3339 date-time begins


class CallRecord(BaseModel):
    id: str
    number: int
    function: str | None = None
    version: int | None = None
    runtime: str | None = None
    params: Any = None
    # the params were left out of this answer: beside the result they do not fit in one NATS
    # message (the largest params and result the limits allow); the record keeps them
    params_omitted: bool = False
    status: CallStatus
    attempts: int = 0
    node: str | None = None
    container: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    exit_code: int | None = None
    served: Served | None = None
    error: ErrorInfo | None = None
    result: Any = None
    callback_url: str | None = None
    callback: CallbackOutcome | None = None
    # A nested call's parent and the root of its tree; None for a call made from outside.
    parent: str | None = None
    root: str | None = None


class GetCall(BaseModel):
    """Request on ``<prefix>.store.calls.get``: one of ``id`` or ``number``."""

    id: str | None = None
    number: int | None = None

    @model_validator(mode="after")
    def _one_key(self) -> "GetCall":
        if (self.id is None) == (self.number is None):
            raise ValueError("give exactly one of id or number")
        return self


class CallQuery(BaseModel):
    """Request on ``<prefix>.store.calls.list``: newest first, paginated by cursor."""

    function: str | None = None
    status: CallStatus | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = None

    @field_validator("since", "until", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        """An RFC 3339 date-time, as the API documents (format ``date-time``): pydantic alone
        would also take a number as seconds since the epoch (``since=0``), or a bare date."""
        if isinstance(v, int | float) or (isinstance(v, str) and not _DATE_TIME.match(v.strip())):
            raise ValueError("a date-time is expected, as 2026-12-03T10:00:00Z")
        return v

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        """In UTC (a time without a zone is UTC); one that has no UTC time (year 9999 with a
        negative offset, say) is refused here rather than by the database."""
        if v is None:
            return None
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        try:
            return v.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{v.isoformat()} has no UTC time") from None


class CallPage(BaseModel):
    items: list[CallRecord]
    next_cursor: str | None = None


class GetLogs(BaseModel):
    """Request on ``<prefix>.store.logs.get``: the stored output of a call or job."""

    id: str


class LogPage(BaseModel):
    id: str
    lines: list[LogEntry]
    truncated: bool = False
