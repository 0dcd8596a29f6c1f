"""Message ids are part of the wire contract: the same strings as every earlier version, so a
publish retried across an upgrade is still stored once."""

from schemas import dedup


def test_the_invoke_stream_ids_are_unchanged() -> None:
    assert dedup.invocation("c1") == "c1"
    assert dedup.job("j1") == "j1"
    assert dedup.rescued("c1", 3) == "c1-rescued-3"


def test_the_call_event_ids_are_unchanged() -> None:
    assert dedup.accepted("c1") == "c1.accepted"
    assert dedup.started("c1", 2) == "c1.started.2"
    assert dedup.log_chunk("c1", 2, 7) == "c1.log.2.7"
    assert dedup.callback("c1") == "c1.callback"
    assert dedup.finished("c1", 2) == "c1.finished.2"  # (new: only rescue's unroutable calls)


def test_the_job_event_ids_are_unchanged() -> None:
    assert dedup.job_accepted("j1") == "j1.job_accepted"
    assert dedup.job_started("j1", 1) == "j1.job_started.1"
    assert dedup.job_finished("j1", 1) == "j1.job_finished.1"
    assert dedup.job_cancelled("j1") == "j1.job_finished.cancel"


def test_the_header_is_nats_msg_id() -> None:
    assert dedup.header("c1.accepted") == {"Nats-Msg-Id": "c1.accepted"}
