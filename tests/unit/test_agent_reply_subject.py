import pytest
from nats.aio.msg import Msg

from common.workitem import Delivery
from node_agent.calls.runner import _reply_subject


def test_a_plain_inbox_subject_is_kept() -> None:
    assert _reply_subject("_INBOX.abc") == "_INBOX.abc"
    assert _reply_subject("_INBOX.gateway.Xy7.42") == "_INBOX.gateway.Xy7.42"


@pytest.mark.parametrize(
    "value",
    [None, "", "_INBOX..b", "_INBOX.", "_INBOX.a.", "_INBOX.*.b", "_INBOX.>", "_INBOX.a b", "_INBOX.\tb", "_INBOX.a\n"],
)
def test_wildcards_empty_tokens_whitespace_and_overlong_subjects_are_refused(value: str | None) -> None:
    assert _reply_subject(value) is None


def test_an_overlong_subject_is_refused() -> None:
    assert _reply_subject("_INBOX." + "x" * 249) is not None
    assert _reply_subject("_INBOX." + "x" * 250) is None


@pytest.mark.parametrize(
    "value",
    [
        "$JS.API.STREAM.DELETE.FAAS_INVOKE",
        "$KV.faas_runtimes.python",
        "faas.invoke.rt.python",
        "faas.events.c1.finished",
        "faas.replies.gw1.42",
        "_INBOX",
        "_inbox.abc",
        "x._INBOX.abc",
    ],
)
def test_a_subject_outside_the_reply_namespace_is_refused(value: str) -> None:
    assert _reply_subject(value) is None


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.FAAS_INVOKE.rt_python.3.1207.1190.1763800000000000000.17",
        # the form with a domain and an account hash: left to nats-py
        "$JS.ACK.hub.ACCHASH.FAAS_INVOKE.rt_python.2.55.54.1763800000000000000.0.tok",
    ],
)
def test_delivery_reads_what_nats_py_reads(reply: str) -> None:
    msg = Msg(None, subject="faas.invoke.python", reply=reply)  # type: ignore[arg-type]
    meta = Msg(None, subject="faas.invoke.python", reply=reply).metadata  # type: ignore[arg-type]
    d = Delivery(msg)
    assert (d.sequence, d.attempt) == (meta.sequence.stream, meta.num_delivered)
    assert (d.sequence, d.attempt) in ((1207, 3), (55, 2))
