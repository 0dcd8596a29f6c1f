"""A call tree (``GET /v1/calls/{id}/tree``) as plain text lines, one call a line:

fib 3f2a9c1e DONE 41.2 ms
├── fib 9c1e0a4d DONE 30.3 ms
│   └── fib 77b00a4d ERROR 12.0 ms CallDepthExceeded
└── fib e2100a4d DONE 4.0 ms
"""

from typing import Any


def label(call: dict[str, Any]) -> str:
    parts = [str(call.get("function") or "?"), str(call.get("id", ""))[:8], str(call.get("status", ""))]
    if call.get("duration_ms") is not None:
        parts.append(f"{call['duration_ms']:.1f} ms")
    if call.get("error"):
        parts.append(str(call["error"].get("type", "")))
    return " ".join(parts)


def tree_lines(root: dict[str, Any]) -> list[str]:
    lines = [label(root)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        children = node.get("children") or []
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + label(child))
            walk(child, prefix + ("    " if last else "│   "))

    walk(root, "")
    if root.get("truncated"):
        lines.append("… (more calls than the answer holds)")
    return lines
