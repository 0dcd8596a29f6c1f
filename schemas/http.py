"""The HTTP API's own shapes: the error body, path and query parameters, multipart forms and
the answers that are not records kept elsewhere in ``schemas``.

The gateway validates requests with these models and ``GET /openapi.json`` is generated from
them (``gateway.openapi``), so the published description cannot drift from what is checked.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.calls import MAX_NUMBER
from schemas.events import CallStatus
from schemas.function import MAX_STEPS, FunctionRecord
from schemas.names import CALL_ID_PATTERN, NAME_PATTERN
from schemas.nodes import NodeState
from schemas.tokens import Role


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: bad_request, not_found, payload_too_large, ...")
    message: str = Field(description="for a person")


class ErrorBody(BaseModel):
    """Every error answer of the API, whatever its status."""

    error: ErrorDetail


# Path parameters.


class NamePath(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)


class IdPath(BaseModel):
    id: str = Field(pattern=CALL_ID_PATTERN)


class CallKeyPath(BaseModel):
    key: str = Field(description="a call id, or a call number (all digits)", pattern=CALL_ID_PATTERN)


class CallNumPath(BaseModel):
    callNum: int = Field(ge=1, le=MAX_NUMBER)


class LegacyFunctionPath(BaseModel):
    runtime: str = Field(pattern=NAME_PATTERN)
    funcName: str = Field(pattern=NAME_PATTERN)


# Query strings. Unknown parameters are ignored.


class InvokeQuery(BaseModel):
    """``POST /v1/functions/{name}/invoke?...``."""

    model_config = ConfigDict(populate_by_name=True)

    run_async: bool = Field(
        default=False, alias="async", description="202 at once with the call's id and number; the call goes on"
    )
    wait: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="seconds to wait for the result (default sync_wait_s, capped at max_sync_wait_s);"
        " past it, 202 with the call's id (the call goes on)",
    )
    timeout: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="lower the function's timeout for this call"
    )
    callback_url: str | None = Field(
        default=None, max_length=2048, description="POST the finished call here (also header X-Callback-Url)"
    )


class LogsQuery(BaseModel):
    follow: bool = Field(
        default=False, description="a live Server-Sent Events stream (also with Accept: text/event-stream)"
    )


# Multipart forms.


class FunctionForm(BaseModel):
    """``POST /v1/functions`` (multipart/form-data)."""

    name: str = Field(pattern=NAME_PATTERN)
    runtime: str = Field(pattern=NAME_PATTERN)
    module: bytes = Field(description="the function's code: a .zip or .tar.gz")
    limits: str | None = Field(default=None, description="JSON of the function's Limits")
    handler: str | None = Field(default=None, description="module:function, for the handler protocol")
    calls: str | None = Field(
        default=None, description="the functions this one may call (faas.call), comma-separated; default none"
    )


class SequenceRequest(BaseModel):
    """``POST /v1/sequences``: a function that is its steps called in turn (JSON body)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    steps: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        min_length=1, max_length=MAX_STEPS, description="registered functions, in order"
    )
    timeout_s: float | None = Field(default=None, gt=0, le=900, description="for the whole sequence (default 30)")


class LegacyFunctionForm(BaseModel):
    """``POST /registerFunction/{runtime}/{funcName}`` (multipart/form-data)."""

    module: bytes = Field(description="the function's code: a .zip or .tar.gz")


# Answers.


class Health(BaseModel):
    status: str


class Deleted(BaseModel):
    deleted: str


class Revoked(BaseModel):
    revoked: str


class Queued(BaseModel):
    """An invocation accepted and still going on (202)."""

    id: str
    number: int
    status: CallStatus
    callback_url: str | None = None


class CancelRequested(BaseModel):
    """A cancel asked for (202), of a call or a job: CANCELLED at once if it was queued, else
    RUNNING until its node has stopped it (its record then ends CANCELLED)."""

    id: str
    status: Literal["RUNNING", "CANCELLED"]
    cancel_requested: bool


class NodeView(NodeState):
    """A node's last heartbeat, as ``GET /v1/nodes`` shows it."""

    fresh: bool = Field(description="heard from in the last few seconds: only fresh nodes are sent routed work")
    age_s: float = Field(description="seconds since the heartbeat")


class FunctionDetail(FunctionRecord):
    """The latest version, plus every version number still in the bucket's history."""

    versions: list[int]


class IssuedToken(BaseModel):
    """A new token: the secret appears in this answer and nowhere else."""

    token: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None = None


class ListedToken(BaseModel):
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None = None
    expired: bool


# The original route set.


class LegacyInvoke(BaseModel):
    """``POST /invokeFunction``."""

    funcName: str
    params: Any = Field(default_factory=dict)


class LegacyInvoked(BaseModel):
    callNum: int
    callId: str


class LegacyRuntime(BaseModel):
    runtime: str


class LegacyFunction(BaseModel):
    function: str
    version: int


class LegacyCall(BaseModel):
    funcName: str
    params: Any
    callNum: int
    status: str = Field(description="PENDING, DONE or ERROR")
    result: str
