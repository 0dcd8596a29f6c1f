"""``faas call tree ID``: a call tree drawn one call a line."""

import json

from click.testing import CliRunner

from faas_cli.main import cli
from faas_cli.tree import tree_lines
from tests.fakes.gateway_client import FakeGatewayClient


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


def test_faas_call_tree_draws_the_gateways_answer_and_json_gives_it_whole() -> None:
    tree = node("r0000000x", "DONE", node("a"))
    fake = FakeGatewayClient(
        {("GET", "/v1/calls/17"): (200, {"id": "r0000000x"}), ("GET", "/v1/calls/r0000000x/tree"): (200, tree)}
    )
    out = CliRunner().invoke(cli, ["call", "tree", "17"], obj=fake, env={"FAAS_OUTPUT": None})
    assert out.exit_code == 0, out.output
    assert out.output.splitlines() == ["fib r0000000 DONE 1.2 ms", "└── fib a DONE 1.2 ms"]
    out = CliRunner().invoke(cli, ["-o", "json", "call", "tree", "r0000000x"], obj=fake, env={"FAAS_OUTPUT": None})
    assert json.loads(out.output) == tree
