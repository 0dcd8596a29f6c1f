"""Folding call events into call records: pure, idempotent and tolerant of any order.

The one fold of the project: the store keeps its records with it, and the gateway builds a
sync call's answer and a callback's body with it from the events it has, so that all three
say the same thing about a call.

JetStream delivers at least once, and the events of one call come from different publishers
(gateway, node agents), so a record must end up the same whatever the order, and an event
applied twice must change nothing. The rules:

- a missing record is created by whichever event comes first;
- what was called (function, version, runtime, params, parent, root) is filled by any event that knows
  it, and never overwritten; ``created_at`` is the accepted event's time; when none has been
  seen, the ``created_at`` a ``Finished`` carries (the same time), else provisionally the
  first event's time, which either of those replaces;
- a ``Finished`` that carries ``started_at`` fills it when no ``Started`` was seen (an agent
  may leave out the Started event of a short call);
- status only moves forward (``CallStatus.rank``); the first terminal event wins and every
  later ``Finished`` is ignored;
- a ``Started`` of the newest attempt sets where the call runs and since when; an older
  attempt only fills what is still empty;
- ``callback_url`` is filled by the first event that carries one (``Accepted``, ``Finished``);
- a ``Callback`` sets ``callback``, the delivery outcome: the latest (by its ``at``) wins,
  whatever the order they arrive in. It is not a status change.

``Logs`` events are not record events: the store keeps them as log chunks.
"""

from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime

from schemas.calls import CallRecord
from schemas.events import Accepted, Callback, CallbackOutcome, CallStatus, Finished, Started

# The call events that shape a record.
RecordEvent = Accepted | Started | Finished | Callback


def _utc(at: datetime) -> datetime:
    # A publisher may send a naive timestamp: take it as UTC so records compare and store alike.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def new_record(event: RecordEvent) -> CallRecord:
    """The empty record an event creates before it is applied."""
    return CallRecord(id=event.call_id, number=event.number, status=CallStatus.QUEUED)


def merge(record: CallRecord | None, event: RecordEvent) -> CallRecord:
    """Apply one event to a record (created if None), in place; returns the record."""
    if record is None:
        record = new_record(event)
    at = _utc(event.at)
    _fill_what_was_called(record, event, at)
    if isinstance(event, Started):
        _apply_started(record, event, at)
    elif isinstance(event, Finished):
        _apply_finished(record, event, at)
    elif isinstance(event, Callback):
        _apply_callback(record, event)
    return record


def fold(events: Iterable[RecordEvent]) -> CallRecord:
    """The record of one call from its events (at least one), in any order."""
    record: CallRecord | None = None
    for event in events:
        record = merge(record, event)
    if record is None:
        raise ValueError("no event to fold")
    return record


def merge_all(records: MutableMapping[str, CallRecord], events: Iterable[RecordEvent]) -> set[str]:
    """Apply events in order to the records they name, creating missing ones.

    Returns the ids of the records touched (changed or not).
    """
    touched: set[str] = set()
    for event in events:
        records[event.call_id] = merge(records.get(event.call_id), event)
        touched.add(event.call_id)
    return touched


def _fill_what_was_called(record: CallRecord, event: RecordEvent, at: datetime) -> None:
    if record.function is None:
        record.function = event.function
    if record.version is None:
        record.version = event.version
    if record.runtime is None:
        record.runtime = event.runtime
    if record.params is None:
        record.params = event.params
    if record.parent is None:
        record.parent = event.parent
    if record.root is None:
        record.root = event.root
    if record.callback_url is None and isinstance(event, Accepted | Finished):
        record.callback_url = event.callback_url
    if isinstance(event, Accepted):
        record.created_at = at
    elif isinstance(event, Finished) and event.created_at is not None:
        # The invocation's own time (the accepted event's): it replaces a provisional value,
        # which is later, whichever of the two events came first.
        created = _utc(event.created_at)
        if record.created_at is None or created < record.created_at:
            record.created_at = created
    elif record.created_at is None:
        record.created_at = at


def _apply_started(record: CallRecord, event: Started, at: datetime) -> None:
    # The newest attempt says where the call runs (or ran: the finishing attempt is the newest).
    if event.attempt >= record.attempts:
        record.node = event.node
        if event.container is not None or event.attempt > record.attempts:
            record.container = event.container
        record.started_at = at
    else:
        if record.node is None:
            record.node = event.node
        if record.container is None:
            record.container = event.container
        if record.started_at is None:
            record.started_at = at
    record.attempts = max(record.attempts, event.attempt)
    if record.status.rank < CallStatus.RUNNING.rank:
        record.status = CallStatus.RUNNING


def _apply_finished(record: CallRecord, event: Finished, at: datetime) -> None:
    if event.attempt is not None:
        record.attempts = max(record.attempts, event.attempt)
    # First terminal event wins; a "finished" that is not terminal never moves status back.
    if record.status.terminal or event.status.rank < record.status.rank:
        return
    record.status = event.status
    record.result = event.result
    record.error = event.error
    record.exit_code = event.exit_code
    record.served = event.served
    record.duration_ms = event.duration_ms
    record.finished_at = at
    if record.started_at is None and event.started_at is not None:
        record.started_at = _utc(event.started_at)
    if event.node is not None:
        record.node = event.node
    if event.container is not None:
        record.container = event.container


def _apply_callback(record: CallRecord, event: Callback) -> None:
    outcome = event.outcome.model_copy(update={"at": _utc(event.outcome.at)})
    if record.callback is None or _callback_order(outcome) >= _callback_order(record.callback):
        record.callback = outcome
    if record.callback_url is None:
        record.callback_url = outcome.url


def _callback_order(outcome: CallbackOutcome) -> tuple[datetime, bool, int]:
    # Latest first; on a tie, a delivery beats a failure and more attempts beat fewer, so the
    # outcome does not depend on which of two same-instant events arrived last.
    return _utc(outcome.at), outcome.delivered, outcome.attempts
