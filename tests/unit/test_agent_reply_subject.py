import pytest
from nats.aio.msg import Msg

from common.workitem import Delivery
from node_agent.calls.runner import _reply_subject


def test_a_plain_subject_is_kept() -> None:
    assert _reply_subject("faas.replies.gw1.42") == "faas.replies.gw1.42"
    assert _reply_subject("_INBOX.abc") == "_INBOX.abc"


@pytest.mark.parametrize("value", [None, "", "a..b", ".a", "a.", "a.*.b", "a.>", "a b", "a.\tb", "a\n", "x" * 257])
def test_wildcards_empty_tokens_whitespace_and_overlong_subjects_are_refused(value: str | None) -> None:
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
