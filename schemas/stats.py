"""Call statistics over a recent window: what the dashboard's charts show (``GET /v1/stats``).

The store answers :class:`StatsQuery` on ``<prefix>.store.calls.stats`` with
:class:`CallStats`, computed from its call records; the gateway adds the invoke stream's
depth per subject (:class:`QueueDepth`) and answers :class:`Stats`.
"""

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field, field_validator, model_validator

from schemas.calls import CallRecord
from schemas.names import NAME_PATTERN

MAX_BUCKETS = 360
_EARLIEST = datetime.min.replace(tzinfo=UTC)


class StatsQuery(BaseModel):
    """Calls that finished in ``(until - window_s, until]``, in buckets of ``step_s``."""

    window_s: int = Field(default=300, ge=10, le=3600, description="seconds back from until (or now)")
    step_s: int = Field(default=10, ge=1, le=600, description="width of a bucket, in seconds")
    function: str | None = Field(default=None, pattern=NAME_PATTERN, description="only this function's calls")
    errors: int = Field(default=10, ge=0, le=50, description="how many of the latest failed calls to include")
    until: datetime | None = Field(default=None, description="end of the window (RFC 3339); default: now")

    @field_validator("until")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        """In UTC (a time without a zone is UTC); one that has no UTC time is refused."""
        if v is None:
            return None
        if v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        try:
            return v.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{v.isoformat()} has no UTC time") from None

    @model_validator(mode="after")
    def _few_buckets(self) -> "StatsQuery":
        if self.window_s // self.step_s > MAX_BUCKETS:
            raise ValueError(f"window_s / step_s must be at most {MAX_BUCKETS} buckets")
        # The buckets reach back up to window_s + step_s before until: a time must be there.
        if self.until is not None and self.until - _EARLIEST < timedelta(seconds=self.window_s + self.step_s):
            raise ValueError("until is too early: the window would start before the year 1")
        return self


class StatsBucket(BaseModel):
    """Calls that finished in ``[at, at + step_s)``. Latency: ``finished_at - created_at``
    (what a caller waits: queueing, container, run), in milliseconds; None without calls."""

    at: datetime
    calls: int = 0
    errors: int = Field(default=0, description="ended ERROR or TIMEOUT")
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class CallStats(BaseModel):
    """The store's answer: buckets oldest first, totals over the window, the latest failures."""

    since: datetime
    until: datetime
    step_s: int
    buckets: list[StatsBucket]
    finished: int = Field(description="calls that ended in the window, whatever their status")
    by_status: dict[str, int] = Field(default_factory=dict)
    calls_per_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    recent_errors: list[CallRecord] = Field(
        default_factory=list, description="the latest ERROR or TIMEOUT calls, newest first, without params or result"
    )
    capped: bool = Field(default=False, description="the window held more calls than the store reads for one answer")


class QueueDepth(BaseModel):
    """Messages in the invoke stream on one subject: waiting or running (not yet acknowledged)."""

    subject: str
    kind: str = Field(description="runtime, node or job")
    name: str = Field(description="the runtime, the node id, or the job priority")
    messages: int


class Stats(CallStats):
    """``GET /v1/stats``: the store's call statistics plus the queue depth, now."""

    queues: list[QueueDepth]
