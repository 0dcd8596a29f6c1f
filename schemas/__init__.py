"""The wire contract: every NATS subject, bucket name, message id (``dedup``) and message model
lives here.

Nothing outside this package parses a NATS payload; services call ``decode``/``encode``.
"""

from schemas import dedup
from schemas.calls import CallPage, CallQuery, CallRecord, GetCall, GetLogs, LogPage
from schemas.codec import InvalidMessage, decode, decode_json, encode, encode_json
from schemas.dead_letters import DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from schemas.events import (
    Accepted,
    Callback,
    CallbackOutcome,
    CallEvent,
    CallStatus,
    ErrorInfo,
    Finished,
    LogEntry,
    Logs,
    Served,
    Started,
    decode_event,
)
from schemas.function import FunctionRecord, Limits
from schemas.invocation import REPLY_PREFIX, REPLY_TO, Invocation
from schemas.jobs import (
    GetJob,
    JobAccepted,
    JobContainer,
    JobEvent,
    JobFinished,
    JobMaxima,
    JobMessage,
    JobPage,
    JobQuery,
    JobRecord,
    JobResult,
    JobSecrets,
    JobSpec,
    JobStarted,
    JobStatus,
    RegistryAuth,
    decode_job_event,
    over_maxima,
)
from schemas.names import NAME_PATTERN, is_valid_name
from schemas.nodes import NodeState, function_key
from schemas.runtime import RuntimeSpec
from schemas.subjects import Layout
from schemas.tokens import Role, TokenName, TokenRecord, TokenRequest, new_token, token_digest

__all__ = [
    "NAME_PATTERN",
    "REPLY_PREFIX",
    "REPLY_TO",
    "Accepted",
    "CallEvent",
    "CallPage",
    "CallQuery",
    "CallRecord",
    "CallStatus",
    "Callback",
    "CallbackOutcome",
    "DeadLetterPage",
    "DeadLetterQuery",
    "DeadLetterRecord",
    "ErrorInfo",
    "Finished",
    "FunctionRecord",
    "GetCall",
    "GetJob",
    "GetLogs",
    "InvalidMessage",
    "Invocation",
    "JobAccepted",
    "JobContainer",
    "JobEvent",
    "JobFinished",
    "JobMaxima",
    "JobMessage",
    "JobPage",
    "JobQuery",
    "JobRecord",
    "JobResult",
    "JobSecrets",
    "JobSpec",
    "JobStarted",
    "JobStatus",
    "Layout",
    "Limits",
    "LogEntry",
    "LogPage",
    "Logs",
    "NodeState",
    "RegistryAuth",
    "Role",
    "RuntimeSpec",
    "Served",
    "Started",
    "TokenName",
    "TokenRecord",
    "TokenRequest",
    "decode",
    "decode_event",
    "decode_job_event",
    "decode_json",
    "dedup",
    "encode",
    "encode_json",
    "function_key",
    "is_valid_name",
    "new_token",
    "over_maxima",
    "token_digest",
]
