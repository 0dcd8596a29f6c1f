"""``faas call tree ID``: a call tree drawn one call a line."""

from faas_cli.tree import tree_lines


def node(id: str, status: str = "DONE", *children: dict[str, object], **kw: object) -> dict[str, object]:
    return {"id": id, "function": "fib", "status": status, "duration_ms": 1.25, "children": list(children), **kw}


def test_children_are_drawn_under_their_parent() -> None:
    root = node("r0000000x", "DONE", node("a", "DONE", node("b", "ERROR", error={"type": "Timeout"})), node("c"))
    assert tree_lines(root) == [
        "fib r0000000 DONE 1.2 ms",
        "├── fib a DONE 1.2 ms",
        "│   └── fib b ERROR 1.2 ms Timeout",
        "└── fib c DONE 1.2 ms",
    ]


def test_a_truncated_tree_says_so() -> None:
    assert tree_lines(node("r", truncated=True))[-1].startswith("…")
