"""Conversion between rows (mappings keyed by column name) and what the store hands out.

``*_to_values`` give every column but the writer's own bookkeeping; reading a row back and
converting it again gives equal values, which is how the writer tells what changed.

PostgreSQL refuses a NUL character in a text column (SQLite takes it): in a string column a
NUL is stored as U+FFFD (REPLACEMENT CHARACTER) on both backends, so that an event carrying
one (a job description, a function's stderr tail) is stored like any other, not refused.
JSON columns (params, results...) keep it: JSON escapes it as ``\u0000``.
"""

from collections.abc import Mapping
from typing import Any

from schemas import CallbackOutcome, CallRecord, CallStatus, ErrorInfo, JobResult, JobStatus
from store.job_merge import JobState

NUL_STANDIN = "\ufffd"


def text_safe(value: Any) -> Any:
    """A string with each NUL replaced by :data:`NUL_STANDIN`; any other value as it is."""
    return value.replace("\x00", NUL_STANDIN) if isinstance(value, str) and "\x00" in value else value


def _text_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {k: text_safe(v) for k, v in values.items()}


def record_to_values(record: CallRecord) -> dict[str, Any]:
    """Column values of a call record (without ``updated_at``)."""
    return _text_safe(
        {
            "id": record.id,
            "number": record.number,
            "function": record.function,
            "version": record.version,
            "runtime": record.runtime,
            "params": record.params,
            "status": record.status.value,
            "attempts": record.attempts,
            "node": record.node,
            "container": record.container,
            "created_at": record.created_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "duration_ms": record.duration_ms,
            "exit_code": record.exit_code,
            "served": record.served,
            "error_type": record.error.type if record.error else None,
            "error_message": record.error.message if record.error else None,
            "result": record.result,
            "callback_url": record.callback_url,
            "callback": record.callback.model_dump(mode="json") if record.callback else None,
            "parent": record.parent,
            "root": record.root,
        }
    )


def row_to_record(row: Mapping[Any, Any]) -> CallRecord:
    """A call record from a row mapping (``result.mappings()`` or ``Row._mapping``)."""
    error = None
    if row["error_type"] is not None or row["error_message"] is not None:
        error = ErrorInfo(type=row["error_type"] or "Error", message=row["error_message"] or "")
    callback = row["callback"]
    return CallRecord(
        id=row["id"],
        number=row["number"],
        function=row["function"],
        version=row["version"],
        runtime=row["runtime"],
        params=row["params"],
        status=CallStatus(row["status"]),
        attempts=row["attempts"],
        node=row["node"],
        container=row["container"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        exit_code=row["exit_code"],
        served=row["served"],
        error=error,
        result=row["result"],
        callback_url=row["callback_url"],
        callback=CallbackOutcome.model_validate(callback) if callback is not None else None,
        parent=row["parent"],
        root=row["root"],
    )


def job_to_values(state: JobState) -> dict[str, Any]:
    """Column values of a job (all of them: ``updated_at`` is an event time here)."""
    return _text_safe(
        {
            "id": state.id,
            "number": state.number,
            "name": state.name,
            "description": state.description,
            "priority": state.priority,
            "image": state.image,
            "command": state.command,
            "env": state.env,
            "secret_env_names": state.secret_env_names,
            "metadata": state.metadata,
            "status": state.status.value,
            "started_node": state.started_node,
            "finished_node": state.finished_node,
            "container": state.container,
            "started_at": state.started_at,
            "created_at": state.created_at,
            "updated_at": state.updated_at,
            "result": state.result.model_dump(mode="json"),
        }
    )


def row_to_job(row: Mapping[Any, Any]) -> JobState:
    result = row["result"]
    return JobState(
        id=row["id"],
        number=row["number"],
        name=row["name"],
        description=row["description"],
        priority=row["priority"],
        image=row["image"],
        command=row["command"],
        env=row["env"],
        secret_env_names=row["secret_env_names"],
        metadata=row["metadata"],
        status=JobStatus(row["status"]),
        started_node=row["started_node"],
        finished_node=row["finished_node"],
        container=row["container"],
        started_at=row["started_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        result=JobResult.model_validate(result) if result is not None else JobResult(),
    )
