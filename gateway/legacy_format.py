"""The original API's call shape:
``{"funcName": "dice", "params": {...}, "callNum": 1, "status": "PENDING", "result": ""}``."""

from typing import Any

from schemas import CallRecord, CallStatus, encode_json


def legacy_status(status: CallStatus) -> str:
    if not status.terminal:
        return "PENDING"
    return "DONE" if status == CallStatus.DONE else "ERROR"


def legacy_result(call: CallRecord) -> str:
    """ "" while pending; a string result as is; any other JSON compactly; on error the message."""
    if not call.status.terminal:
        return ""
    if call.status != CallStatus.DONE:
        return call.error.message if call.error else call.status.value
    if call.result is None:
        return ""
    if isinstance(call.result, str):
        return call.result
    return encode_json(call.result).decode()


def legacy_call(call: CallRecord) -> dict[str, Any]:
    return {
        "funcName": call.function or "",
        "params": call.params if call.params is not None else {},
        "callNum": call.number,
        "status": legacy_status(call.status),
        "result": legacy_result(call),
    }


def legacy_calls(calls: list[CallRecord]) -> dict[str, dict[str, Any]]:
    """Keyed ``c<number>``, oldest first."""
    return {f"c{c.number}": legacy_call(c) for c in sorted(calls, key=lambda c: c.number)}
