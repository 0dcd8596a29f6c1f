"""A call's ``finished`` event always fits one NATS message, whatever the call returned.

The server and the events stream refuse a message over their maximum (``max_payload``,
``LayoutLimits.max_msg_size``: 1 MiB). A ``finished`` event that cannot be published is
never acked, so its call would run again until it ends ``TooManyAttempts``. So before it is
published the event is brought within the budget, in this order:

1. an error's message (a handler's exception text and traceback, a stderr tail) is cut to
   :data:`ERROR_MESSAGE_BYTES`, ending with a marker that says how much was cut;
2. text no JSON encoder can write (a lone UTF-16 surrogate a function printed as ``\\ud800``)
   is replaced with U+FFFD, in the result, the params and the error;
3. the params are echoed only when they fit beside the result: they are in the gateway's
   ``accepted`` event, and the runner publishes the ``started`` event (which carries them)
   when it drops them, so the record keeps them either way;
4. a result that still does not fit ends the call as ``ResultTooLarge`` with its size. The
   result limit (``Limits.result_bytes``, at most 768 KiB, measured as JSON) keeps this for
   a server whose max payload is below the default.

A result within its limit is therefore always delivered whole: it is never cut.
"""

import logging
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from common.logs import fields
from schemas import CallStatus, ErrorInfo, Finished, encode

log = logging.getLogger(__name__)

# An error message longer than this (UTF-8 bytes) is cut, with a marker.
ERROR_MESSAGE_BYTES = 32 * 1024
# Kept free for the headers of the message (JetStream counts them in max_msg_size).
HEADROOM = 4096


@dataclass
class Fitted:
    data: bytes
    event: Finished
    # The params were left out (too large beside the result).
    params_dropped: bool = False


def event_budget(max_payload: int, max_msg_size: int) -> int:
    """The largest encoded event: what both the server and the stream accept, less headers."""
    return min(max_payload, max_msg_size) - HEADROOM


def cut_text(text: str, max_bytes: int) -> str:
    """``text`` if it is at most ``max_bytes`` in UTF-8, else its head with a marker."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return text
    head = raw[:max_bytes].decode("utf-8", "ignore")
    return f"{head}\n[... {len(raw) - max_bytes} more bytes cut]"


def scrub(value: Any) -> Any:
    """``value`` with every string made encodable (lone surrogates -> U+FFFD)."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


def fit_finished(event: Finished, max_bytes: int) -> Fitted:
    """The event, changed as little as needed, and its encoding of at most ``max_bytes``."""
    if event.error is not None and len(event.error.message) * 4 > ERROR_MESSAGE_BYTES:
        error = ErrorInfo(type=event.error.type, message=cut_text(event.error.message, ERROR_MESSAGE_BYTES))
        event = event.model_copy(update={"error": error})
    data = _encode(event)
    if data is None:
        fixed = {"result": scrub(event.result), "params": scrub(event.params)}
        if event.error is not None:
            fixed["error"] = ErrorInfo(type=scrub(event.error.type), message=scrub(event.error.message))
        event = event.model_copy(update=fixed)
        data = _encode(event)
        assert data is not None  # every string is encodable now
    if len(data) <= max_bytes:
        return Fitted(data, event)
    size = len(data)
    had_params = event.params is not None
    if had_params:
        event = event.model_copy(update={"params": None})
        data = encode(event)
        if len(data) <= max_bytes:
            log.info("call.finished.params_left_out", extra=fields(call=event.call_id, bytes=size))
            return Fitted(data, event, params_dropped=True)
    result_bytes = len(to_json(event.result))
    error = ErrorInfo(
        type="ResultTooLarge",
        message=f"the result is {result_bytes} bytes as JSON, more than a finished event can carry ({max_bytes})",
    )
    event = event.model_copy(update={"status": CallStatus.ERROR, "result": None, "error": error})
    log.warning("call.finished.result_too_large", extra=fields(call=event.call_id, bytes=result_bytes))
    return Fitted(encode(event), event, params_dropped=had_params)


def _encode(event: Finished) -> bytes | None:
    try:
        return encode(event)
    except PydanticSerializationError:
        return None
