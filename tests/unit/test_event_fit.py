"""The sizing of finished events (node_agent/calls/fit.py): whatever a call returned, the
event fits the budget, a result within its limit is whole, and what was changed says so."""

import json

import pytest

from node_agent.calls.fit import ERROR_MESSAGE_BYTES, HEADROOM, cut_text, event_budget, fit_finished
from node_agent.wire.call import done
from node_agent.wire.stdio import Streams
from schemas import CallStatus, ErrorInfo, Finished, FunctionRecord, Limits, decode

MiB = 1 << 20
BUDGET = event_budget(MiB, MiB)


def _finished(**kw: object) -> Finished:
    return Finished(call_id="c1", number=1, function="f", node="n1", **kw)  # type: ignore[arg-type]


def test_the_budget_leaves_room_for_headers_under_the_smaller_limit() -> None:
    assert event_budget(MiB, 8 * MiB) == event_budget(8 * MiB, MiB) == MiB - HEADROOM


def test_a_small_event_is_unchanged() -> None:
    event = _finished(status=CallStatus.DONE, result={"a": 1}, params={"x": 2})
    fitted = fit_finished(event, BUDGET)
    assert fitted.event == event and not fitted.params_dropped
    assert decode(Finished, fitted.data) == event


def test_largest_params_and_result_the_limits_allow_keep_the_result_whole() -> None:
    # 256 KiB params (the gateway's default) beside a 768 KiB result (the most a function may
    # return): together over 1 MiB, today a publish that fails and a call run again.
    limit = Limits.model_fields["result_bytes"].metadata  # the bound is le=768 KiB
    assert any(getattr(m, "le", None) == 768 * 1024 for m in limit)
    result = "r" * (768 * 1024 - 2)  # 768 KiB as JSON, quotes included
    params = {"p": "x" * (256 * 1024)}
    fitted = fit_finished(_finished(status=CallStatus.DONE, result=result, params=params), BUDGET)
    assert len(fitted.data) <= BUDGET
    assert fitted.event.status is CallStatus.DONE and fitted.event.result == result
    assert fitted.params_dropped and fitted.event.params is None


def test_params_that_fit_beside_the_result_are_kept() -> None:
    params = {"p": "x" * (200 * 1024)}
    fitted = fit_finished(_finished(status=CallStatus.DONE, result="r" * (600 * 1024), params=params), BUDGET)
    assert fitted.event.params == params and not fitted.params_dropped


def test_params_too_large_for_an_event_of_their_own_are_left_out_of_an_error() -> None:
    # An invocation published by hand just under the max payload: its ParamsTooLarge error
    # cannot echo them.
    params = "x" * (MiB - 200)
    error = ErrorInfo(type="ParamsTooLarge", message="params are 1048376 bytes, over 262144")
    fitted = fit_finished(_finished(status=CallStatus.ERROR, error=error, params=params), BUDGET)
    assert len(fitted.data) <= BUDGET and fitted.params_dropped
    assert fitted.event.error == error


def test_a_long_error_message_is_cut_with_a_marker_saying_how_much() -> None:
    message = "Traceback:\n" + "é" * MiB  # 2 MiB of UTF-8
    fitted = fit_finished(_finished(status=CallStatus.ERROR, error=ErrorInfo(type="Boom", message=message)), BUDGET)
    assert fitted.event.error is not None
    cut = fitted.event.error.message
    assert cut.startswith("Traceback:\né")
    assert cut.endswith(f"[... {len(message.encode()) - ERROR_MESSAGE_BYTES} more bytes cut]")
    assert len(cut.encode()) < ERROR_MESSAGE_BYTES + 100 and len(fitted.data) <= BUDGET


def test_cut_text_never_splits_a_character() -> None:
    assert cut_text("ab", 2) == "ab"
    assert cut_text("aé", 2).startswith("a\n")  # "é" is 2 bytes: not half of it


def test_a_result_no_encoder_can_write_is_scrubbed_not_a_failed_publish() -> None:
    # A function that printed JSON with a lone surrogate escape.
    result = json.loads('{"k\\ud800": ["a\\udfffb", 1]}')
    fitted = fit_finished(_finished(status=CallStatus.DONE, result=result, params="\ud800"), BUDGET)
    assert fitted.event.result == {"k\ufffd": ["a\ufffdb", 1]} and fitted.event.params == "\ufffd"
    assert decode(Finished, fitted.data).result == fitted.event.result


@pytest.mark.parametrize("params", [None, {"p": 1}])
def test_a_result_over_what_any_event_carries_ends_as_result_too_large(params: object) -> None:
    # Only with a server max payload below what the result limit allows.
    budget = event_budget(256 * 1024, MiB)
    fitted = fit_finished(_finished(status=CallStatus.DONE, result="r" * (300 * 1024), params=params), budget)
    assert fitted.event.status is CallStatus.ERROR and fitted.event.result is None
    assert fitted.event.error is not None and fitted.event.error.type == "ResultTooLarge"
    assert str(300 * 1024 + 2) in fitted.event.error.message
    assert len(fitted.data) <= budget and fitted.params_dropped is (params is not None)


def _record(result_bytes: int) -> FunctionRecord:
    return FunctionRecord(
        name="f", runtime="python", version=1, digest="sha256:" + "0" * 64, size=1, archive="zip",
        limits=Limits(result_bytes=result_bytes),
    )  # fmt: skip


def test_command_output_within_its_limit_that_grows_past_it_as_json_is_result_too_large() -> None:
    # 100 KiB of control bytes is 600 KiB once escaped in the event's JSON.
    out = done(Streams(stdout=bytearray(b"\x01" * 100 * 1024)), "cid", _record(256 * 1024))
    assert out.status is CallStatus.ERROR and out.error is not None and out.error.type == "ResultTooLarge"
    # The same output under a limit that holds its JSON is the result.
    out = done(Streams(stdout=bytearray(b"\x01" * 100 * 1024)), "cid", _record(768 * 1024))
    assert out.status is CallStatus.DONE and out.result == "\x01" * 100 * 1024
    # Plain JSON output is not re-measured below a sixth of the limit, and kept.
    assert done(Streams(stdout=bytearray(b'{"a": [1, 2]}')), "cid", _record(1024)).result == {"a": [1, 2]}
