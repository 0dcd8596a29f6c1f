"""Call trees: parent and root folded into records, and the flat tree the store answers
nested for ``GET /v1/calls/{id}/tree``."""

from schemas import Accepted, CallStatus, Finished
from schemas.fold import fold
from schemas.tree import CallTree, TreeCall, nest, open_descendants


def test_parent_and_root_come_from_whichever_event_has_them() -> None:
    finished = Finished(call_id="c2", number=2, status=CallStatus.DONE, parent="c1", root="c0")
    accepted = Accepted(call_id="c2", number=2, function="f")
    for events in ([accepted, finished], [finished, accepted]):
        record = fold(events)
        assert (record.parent, record.root) == ("c1", "c0")


def call(id: str, number: int, parent: str | None = None, status: CallStatus = CallStatus.DONE) -> TreeCall:
    return TreeCall(id=id, number=number, parent=parent, function="fib", status=status)


def test_nest_hangs_each_call_under_its_parent_in_number_order() -> None:
    tree = CallTree(root="r", calls=[call("r", 1), call("a", 2, "r"), call("b", 3, "a"), call("c", 4, "r")])
    root = nest(tree)
    assert root.id == "r" and not root.truncated
    assert [c.id for c in root.children] == ["a", "c"]
    assert [c.id for c in root.children[0].children] == ["b"]


def test_a_call_whose_parent_is_missing_hangs_under_the_root() -> None:
    tree = CallTree(root="r", calls=[call("r", 1), call("b", 3, "gone")], truncated=True)
    root = nest(tree)
    assert [c.id for c in root.children] == ["b"] and root.truncated


def test_open_descendants_are_what_a_cancel_takes_with_it() -> None:
    running = CallStatus.RUNNING
    tree = CallTree(
        root="r",
        calls=[
            call("r", 1, None, running),
            call("a", 2, "r", running),
            call("b", 3, "a", CallStatus.QUEUED),
            call("c", 4, "a"),  # ended: nothing to cancel
            call("d", 5, "c", running),  # under an ended call: still cancelled with a
            call("e", 6, "r", running),  # a sibling of a: not under it
        ],
    )
    assert open_descendants(tree, "a") == ["b", "d"]
    assert open_descendants(tree, "r") == ["a", "b", "d", "e"]
    assert open_descendants(tree, "e") == []
