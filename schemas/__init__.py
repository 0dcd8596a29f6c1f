"""The wire contract: every NATS subject, bucket name and message model lives here.

Nothing outside this package parses a NATS payload; services call ``decode``/``encode``.
"""

from schemas.calls import CallPage, CallQuery, CallRecord, GetCall
from schemas.codec import InvalidMessage, decode, decode_json, encode, encode_json
from schemas.events import (
    Accepted,
    CallEvent,
    CallStatus,
    ErrorInfo,
    Finished,
    Started,
    decode_event,
)
from schemas.function import FunctionRecord, Limits
from schemas.invocation import Invocation
from schemas.names import NAME_PATTERN, is_valid_name
from schemas.runtime import RuntimeSpec
from schemas.subjects import Layout

__all__ = [
    "NAME_PATTERN",
    "Accepted",
    "CallEvent",
    "CallPage",
    "CallQuery",
    "CallRecord",
    "CallStatus",
    "ErrorInfo",
    "Finished",
    "FunctionRecord",
    "GetCall",
    "InvalidMessage",
    "Invocation",
    "Layout",
    "Limits",
    "RuntimeSpec",
    "Started",
    "decode",
    "decode_event",
    "decode_json",
    "encode",
    "encode_json",
    "is_valid_name",
]
