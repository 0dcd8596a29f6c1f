import pytest

from node_agent.calls import _reply_subject


def test_a_plain_subject_is_kept() -> None:
    assert _reply_subject("faas.replies.gw1.42") == "faas.replies.gw1.42"
    assert _reply_subject("_INBOX.abc") == "_INBOX.abc"


@pytest.mark.parametrize("value", [None, "", "a..b", ".a", "a.", "a.*.b", "a.>", "a b", "a.\tb", "a\n", "x" * 257])
def test_wildcards_empty_tokens_whitespace_and_overlong_subjects_are_refused(value: str | None) -> None:
    assert _reply_subject(value) is None
