"""A call tree: a call made from outside (the root) and every call nested under it.

The store answers ``<prefix>.store.calls.tree`` with a :class:`CallTree`: the tree's calls as
a flat list in call-number order, each with its ``parent``; :func:`nest` turns it into the
nested form ``GET /v1/calls/{id}/tree`` answers.
"""

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.events import CallStatus, ErrorInfo, Served

# The most calls a tree answer holds (the store's own limit; a larger tree is truncated).
MAX_TREE_CALLS = 2000


class GetTree(BaseModel):
    """The tree of the call ``id`` (any call of it: the answer starts at its root)."""

    id: str
    limit: int = Field(default=MAX_TREE_CALLS, ge=1, le=MAX_TREE_CALLS)


class TreeCall(BaseModel):
    """One call of a tree: what it was and how it went (no params, no result)."""

    id: str
    number: int
    parent: str | None = None
    function: str | None = None
    status: CallStatus
    duration_ms: float | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    served: Served | None = None
    error: ErrorInfo | None = None


class CallTree(BaseModel):
    root: str
    calls: list[TreeCall]
    # more calls than ``limit``: the newest were left out
    truncated: bool = False


class TreeNode(TreeCall):
    """A call with the calls it made (``GET /v1/calls/{id}/tree``)."""

    children: list["TreeNode"] = Field(default_factory=list)


class TreeAnswer(TreeNode):
    """The root of a tree; ``truncated``: the tree has more calls than the answer holds."""

    truncated: bool = False


def nest(tree: CallTree) -> TreeAnswer:
    """The root call with its ``children`` (each of the same shape), in call-number order. A
    call whose parent is not in the answer (truncated, or not yet recorded) hangs under the root."""
    by_id = {c.id: c for c in tree.calls}
    top = by_id.get(tree.root) or TreeCall(id=tree.root, number=1, status=CallStatus.QUEUED)
    root = TreeAnswer(**top.model_dump(), truncated=tree.truncated)
    nodes: dict[str, TreeNode] = {tree.root: root}
    for call in tree.calls:
        if call.id != tree.root:
            nodes[call.id] = TreeNode(**call.model_dump())
    for call in tree.calls:
        if call.id != tree.root:
            nodes.get(call.parent or "", root).children.append(nodes[call.id])
    return root


def open_descendants(tree: CallTree, call_id: str) -> list[str]:
    """The calls under ``call_id`` in ``tree`` (children, their children...) that have not
    ended, by number: what cancelling ``call_id`` cancels with it."""
    children: dict[str, list[TreeCall]] = {}
    for call in tree.calls:
        if call.parent is not None:
            children.setdefault(call.parent, []).append(call)
    found: list[TreeCall] = []
    todo = [call_id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.id)
    return [c.id for c in sorted(found, key=lambda c: c.number) if not c.status.terminal]
