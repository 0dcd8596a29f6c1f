"""Everything that happens to a call, published on ``<prefix>.events.<call_id>.<kind>``.

Every event carries the call id and number and, where the publisher knows them, what was
called, so that the store can build a record from whichever event reaches it first.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, field_validator

from schemas.clock import utcnow
from schemas.codec import decode_as
from schemas.names import CALL_ID_PATTERN
from schemas.status import Progress


class CallStatus(Progress):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    ERROR = "ERROR"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"


# How a call was served: a new container (``cold``), a runtime's idle container given the
# function's code (``stem``), or a container that held the function already (``warm``).
Served = Literal["cold", "stem", "warm"]


class ErrorInfo(BaseModel):
    type: str
    message: str


class _Event(BaseModel):
    call_id: str = Field(pattern=CALL_ID_PATTERN)
    number: int = Field(ge=1)
    at: datetime = Field(default_factory=utcnow)
    function: str | None = None
    version: int | None = None
    runtime: str | None = None
    params: Any = None
    # A nested call's parent call and the root of its tree (schemas/invocation.py).
    parent: str | None = Field(default=None, pattern=CALL_ID_PATTERN)
    root: str | None = Field(default=None, pattern=CALL_ID_PATTERN)


class Accepted(_Event):
    kind: Literal["accepted"] = "accepted"
    callback_url: str | None = None


class Started(_Event):
    kind: Literal["started"] = "started"
    node: str
    container: str | None = None
    attempt: int = Field(default=1, ge=1)


class Finished(_Event):
    kind: Literal["finished"] = "finished"
    status: CallStatus
    result: Any = None
    error: ErrorInfo | None = None
    exit_code: int | None = None
    duration_ms: float | None = None
    node: str | None = None
    container: str | None = None
    attempt: int | None = None
    served: Served | None = None
    # Copied from the invocation, so that the callback dispatcher needs nothing else.
    callback_url: str | None = None
    # When the call was accepted (the invocation's created_at) and when this attempt started:
    # a short call may be recorded from this event alone (see README, "Events").
    created_at: datetime | None = None
    started_at: datetime | None = None

    @field_validator("status")
    @classmethod
    def _terminal(cls, v: CallStatus) -> CallStatus:
        if not v.terminal:
            raise ValueError(f"a finished call has a final status, not {v.value}")
        return v


class LogEntry(BaseModel):
    """One line of output. ``install``: the output of installing the function's dependencies
    on the node, published as lines of the call that waited for that install."""

    at: datetime
    stream: Literal["stdout", "stderr", "install"]
    text: str


class Logs(_Event):
    """A chunk of a call's or job's output lines, published while it runs.

    ``seq`` numbers chunks from 0 per attempt, so a reader can order them and drop
    duplicates; ``truncated`` is set on the chunk after which output was cut at the limit.
    """

    kind: Literal["log"] = "log"
    attempt: int = Field(default=1, ge=1)
    seq: int = Field(ge=0)
    lines: list[LogEntry]
    truncated: bool = False


class CallbackOutcome(BaseModel):
    url: str
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)


class Callback(_Event):
    """The outcome of POSTing a finished call's result to its callback URL."""

    kind: Literal["callback"] = "callback"
    outcome: CallbackOutcome


CallEvent = Annotated[Accepted | Started | Finished | Logs | Callback, Field(discriminator="kind")]
_EVENT: TypeAdapter[CallEvent] = TypeAdapter(CallEvent)


def decode_event(data: bytes | str) -> CallEvent:
    return decode_as(_EVENT, data)
