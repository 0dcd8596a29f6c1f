"""schemas.fold: the rules that fold call events into a record (the store's records, the
gateway's sync answers and callback bodies), without NATS or a database."""

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from schemas import Accepted, Callback, CallbackOutcome, CallRecord, CallStatus, ErrorInfo, Finished, Started
from schemas.fold import RecordEvent, fold, merge_all

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CALL = "c1"


def accepted(**kw: Any) -> Accepted:
    base: dict[str, Any] = dict(
        call_id=CALL, number=7, at=T0, function="dice", version=2, runtime="python3", params={"n": 6}
    )
    return Accepted(**{**base, **kw})


def started(attempt: int = 1, node: str = "n1", **kw: Any) -> Started:
    base: dict[str, Any] = dict(
        call_id=CALL,
        number=7,
        at=T0 + timedelta(seconds=attempt),
        node=node,
        container=f"ctr-{node}",
        attempt=attempt,
    )
    return Started(**{**base, **kw})


def finished(status: CallStatus = CallStatus.DONE, **kw: Any) -> Finished:
    base: dict[str, Any] = dict(
        call_id=CALL,
        number=7,
        at=T0 + timedelta(seconds=10),
        status=status,
        result={"roll": 4},
        exit_code=0,
        duration_ms=12.5,
        node="n1",
        container="ctr-n1",
    )
    return Finished(**{**base, **kw})


def test_accepted_creates_a_queued_record() -> None:
    r = fold([accepted()])
    assert r.status is CallStatus.QUEUED
    assert (r.id, r.number, r.function, r.version, r.runtime) == (CALL, 7, "dice", 2, "python3")
    assert r.params == {"n": 6}
    assert r.created_at == T0
    assert r.attempts == 0 and r.started_at is None and r.finished_at is None


def test_started_first_creates_a_running_record() -> None:
    r = fold([started()])
    assert r.status is CallStatus.RUNNING
    assert (r.node, r.container, r.attempts) == ("n1", "ctr-n1", 1)
    assert r.started_at == T0 + timedelta(seconds=1)
    assert r.function is None  # nobody said yet
    # Until the accepted event arrives, the first event seen dates the record.
    assert r.created_at == r.started_at


@pytest.mark.parametrize("status", [CallStatus.DONE, CallStatus.ERROR, CallStatus.TIMEOUT, CallStatus.CANCELLED])
def test_finished_first_creates_a_record_with_its_status(status: CallStatus) -> None:
    error = None if status is CallStatus.DONE else ErrorInfo(type="Boom", message="it broke")
    r = fold([finished(status, error=error, exit_code=1)])
    assert r.status is status
    assert r.error == error
    assert r.result == {"roll": 4}
    assert (r.exit_code, r.duration_ms, r.finished_at) == (1, 12.5, T0 + timedelta(seconds=10))
    assert (r.node, r.container) == ("n1", "ctr-n1")


def test_the_full_story_in_order() -> None:
    r = fold([accepted(), started(), finished()])
    assert r.status is CallStatus.DONE
    assert r.created_at == T0
    assert r.started_at == T0 + timedelta(seconds=1)
    assert r.finished_at == T0 + timedelta(seconds=10)
    assert r.result == {"roll": 4} and r.attempts == 1


def test_every_order_gives_the_same_record() -> None:
    events: list[RecordEvent] = [
        accepted(),
        started(1),
        started(2, node="n2"),
        finished(node="n2", container="ctr-n2", attempt=2),
    ]
    results = {fold(list(order)).model_dump_json() for order in itertools.permutations(events)}
    assert len(results) == 1
    r = CallRecord.model_validate_json(results.pop())
    assert r.status is CallStatus.DONE
    assert (r.node, r.container, r.attempts) == ("n2", "ctr-n2", 2)
    assert r.created_at == T0
    assert r.started_at == T0 + timedelta(seconds=2)


@pytest.mark.parametrize("event", [accepted(), started(), finished()], ids=lambda e: e.kind)
def test_the_same_event_twice_changes_nothing(event: RecordEvent) -> None:
    once = fold([event]).model_dump()
    assert fold([event, event]).model_dump() == once


def test_duplicates_anywhere_in_a_history_change_nothing() -> None:
    story: list[RecordEvent] = [accepted(), started(), finished()]
    clean = fold(story).model_dump()
    assert fold([story[0], story[0], story[1], story[0], story[2], story[1], story[2]]).model_dump() == clean


def test_late_started_after_finished_does_not_reopen_the_call() -> None:
    r = fold([accepted(), finished(node=None, container=None), started()])
    assert r.status is CallStatus.DONE
    assert r.result == {"roll": 4}
    # ...but it fills in what the finished event did not say.
    assert (r.node, r.container, r.attempts) == ("n1", "ctr-n1", 1)
    assert r.started_at == T0 + timedelta(seconds=1)


def test_late_accepted_never_moves_a_record_backwards() -> None:
    r = fold([started(), accepted()])
    assert r.status is CallStatus.RUNNING
    r = fold([finished(), accepted()])
    assert r.status is CallStatus.DONE


def test_accepted_after_started_fills_what_was_called_and_created_at() -> None:
    r = fold([started(), finished(), accepted()])
    assert (r.function, r.version, r.runtime, r.params) == ("dice", 2, "python3", {"n": 6})
    assert r.created_at == T0  # the accepted time replaces the provisional one


def test_known_fields_are_never_overwritten() -> None:
    r = fold([accepted(), started(function="other", version=9, runtime="node", params=[1])])
    assert (r.function, r.version, r.runtime, r.params) == ("dice", 2, "python3", {"n": 6})


def test_fields_are_filled_from_any_later_event() -> None:
    bare: dict[str, Any] = dict(function=None, version=None, runtime=None, params=None)
    r = fold([accepted(**bare), started(**bare), finished(function="f", version=3, runtime="rt", params="x")])
    assert (r.function, r.version, r.runtime, r.params) == ("f", 3, "rt", "x")


@pytest.mark.parametrize("params", [0, False, "", [], {}])
def test_falsy_params_count_as_known(params: Any) -> None:
    r = fold([accepted(params=params), finished(params={"other": 1})])
    assert r.params == params


def test_first_terminal_event_wins() -> None:
    first = finished(CallStatus.TIMEOUT, result=None, error=ErrorInfo(type="Timeout", message="30 s"))
    later = finished(CallStatus.DONE, result="late", at=T0 + timedelta(seconds=11))
    r = fold([accepted(), first, later])
    assert r.status is CallStatus.TIMEOUT
    assert r.result is None and r.error == ErrorInfo(type="Timeout", message="30 s")
    assert r.finished_at == T0 + timedelta(seconds=10)


def test_a_cancel_recorded_by_the_gateway_is_not_undone_by_the_agent() -> None:
    """A queued call cancelled: the gateway's final event (no node, no result) comes first; a
    node that had taken it in that instant may still report it started, then done."""
    cancelled = ErrorInfo(type="Cancelled", message="cancelled before it started")
    gateways = finished(CallStatus.CANCELLED, result=None, error=cancelled, node=None, container=None)
    late = finished(CallStatus.DONE, result="late", at=T0 + timedelta(seconds=11))
    r = fold([accepted(), gateways, started(), late])
    assert r.status is CallStatus.CANCELLED and r.error == cancelled and r.result is None
    assert r.finished_at == T0 + timedelta(seconds=10)


def test_attempts_is_the_highest_attempt_seen() -> None:
    r = fold([started(3, node="n3"), started(1), started(2, node="n2")])
    assert r.attempts == 3
    assert (r.node, r.container) == ("n3", "ctr-n3")  # older attempts do not move it
    assert r.started_at == T0 + timedelta(seconds=3)


def test_a_new_attempt_clears_the_previous_container() -> None:
    r = fold([started(1), started(2, node="n2", container=None)])
    assert (r.node, r.container) == ("n2", None)


def test_finished_keeps_node_and_container_when_it_does_not_say() -> None:
    r = fold([started(), finished(node=None, container=None)])
    assert (r.node, r.container) == ("n1", "ctr-n1")


def test_a_finished_event_must_carry_a_final_status() -> None:
    # The contract refuses it, so the store never sees a "finished" that moves a call back.
    with pytest.raises(ValueError, match="final status"):
        finished(CallStatus.QUEUED)


def test_the_number_of_the_first_event_stays() -> None:
    r = fold([accepted(), started(number=99)])
    assert r.number == 7


def test_naive_timestamps_are_taken_as_utc() -> None:
    r = fold([accepted(at=datetime(2025, 1, 1, 12, 0))])
    assert r.created_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_free_form_json_results_are_kept_as_is() -> None:
    for value in ["text", [1, None, "x"], 3.5, None, {"nested": {"null": None}}]:
        assert fold([finished(result=value)]).result == value


def test_there_is_no_record_without_an_event() -> None:
    with pytest.raises(ValueError, match="no event"):
        fold([])


def test_merge_all_creates_and_updates_several_records() -> None:
    records: dict[str, CallRecord] = {}
    touched = merge_all(records, [accepted(), accepted(call_id="c2", number=8), started()])
    assert touched == {"c1", "c2"}
    assert records["c1"].status is CallStatus.RUNNING
    assert records["c2"].status is CallStatus.QUEUED
    touched = merge_all(records, [finished(call_id="c2", number=8)])
    assert touched == {"c2"}
    assert records["c2"].status.terminal


# --- callbacks --------------------------------------------------------------------------------


def callback(delivered: bool, seconds: int, attempts: int = 1, **kw: Any) -> Callback:
    outcome = CallbackOutcome(
        url="https://example.test/hook",
        delivered=delivered,
        attempts=attempts,
        status_code=200 if delivered else 502,
        error=None if delivered else "bad gateway",
        at=T0 + timedelta(seconds=seconds),
    )
    return Callback(call_id=CALL, number=7, at=outcome.at, outcome=outcome, **kw)


def test_accepted_callback_url_fills_the_record() -> None:
    r = fold([accepted(callback_url="https://example.test/hook"), started()])
    assert r.callback_url == "https://example.test/hook" and r.callback is None


def test_a_finished_event_fills_the_callback_url_when_accepted_is_missing() -> None:
    r = fold([finished(callback_url="https://example.test/late")])
    assert r.callback_url == "https://example.test/late"
    r = fold([accepted(callback_url="https://example.test/first"), finished(callback_url="https://other.test")])
    assert r.callback_url == "https://example.test/first"


def test_the_latest_callback_outcome_wins_in_any_order() -> None:
    events: list[RecordEvent] = [
        accepted(callback_url="https://example.test/hook"),
        finished(),
        callback(False, 20, attempts=1),
        callback(False, 25, attempts=2),
        callback(True, 30, attempts=3),
    ]
    results = {fold(list(order)).model_dump_json() for order in itertools.permutations(events)}
    assert len(results) == 1
    r = CallRecord.model_validate_json(results.pop())
    assert r.callback is not None
    assert (r.callback.delivered, r.callback.attempts, r.callback.status_code) == (True, 3, 200)
    # Not a status change.
    assert r.status is CallStatus.DONE and r.finished_at == T0 + timedelta(seconds=10)


def test_a_callback_is_not_a_status_change_even_first() -> None:
    r = fold([callback(True, 30)])
    assert r.status is CallStatus.QUEUED
    assert r.callback_url == "https://example.test/hook"  # known from the outcome
    r = fold([callback(True, 30), started(), finished()])
    assert r.status is CallStatus.DONE and r.callback is not None and r.callback.delivered


def test_same_instant_outcomes_do_not_depend_on_arrival() -> None:
    failed, delivered = callback(False, 30, attempts=2), callback(True, 30, attempts=2)
    assert fold([failed, delivered]).callback == fold([delivered, failed]).callback == delivered.outcome


def test_callback_times_are_kept_in_utc() -> None:
    east = timezone(timedelta(hours=3))
    outcome = CallbackOutcome(
        url="https://x.test", delivered=True, attempts=1, at=datetime(2025, 1, 1, 15, tzinfo=east)
    )
    r = fold([Callback(call_id=CALL, number=7, outcome=outcome)])
    assert r.callback is not None and r.callback.at == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert r.callback.at.tzinfo is UTC


def test_a_finished_event_alone_records_when_the_call_was_accepted_and_started() -> None:
    """An agent may leave out the Started event of a short call, and a sync call's Accepted
    event may never be published: Finished carries both times."""
    r = fold([finished(function="dice", version=2, created_at=T0, started_at=T0 + timedelta(seconds=3))])
    assert r.status is CallStatus.DONE
    assert r.created_at == T0
    assert r.started_at == T0 + timedelta(seconds=3)
    assert r.finished_at == T0 + timedelta(seconds=10)


def test_without_accepted_the_time_a_finished_event_carries_wins_in_any_order() -> None:
    """A sync call's Accepted event may never be published: the record's created_at is the
    invocation's, whether the Started or the Finished event is folded first."""
    for order in itertools.permutations([started(), finished(created_at=T0)]):
        assert fold(list(order)).created_at == T0, order


def test_the_accepted_and_started_events_win_over_the_times_a_finished_event_carries() -> None:
    late = T0 + timedelta(seconds=5)
    for order in itertools.permutations([accepted(), started(), finished(created_at=late, started_at=late)]):
        r = fold(list(order))
        assert r.created_at == T0, order
        assert r.started_at == T0 + timedelta(seconds=1), order
