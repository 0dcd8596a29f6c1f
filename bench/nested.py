"""The cost of a nested call: parent -> child -> parent, warm, against a direct warm call of
the child, and a chain of 10 nested calls.

    python -m bench.nested                         # 200 rounds (a minute or two on 2 cores)
    python -m bench.nested --calls 5 --image faas-python:dev   # a smoke test

One platform (policy adaptive, 8 slots). Each round makes two sync HTTP calls in turn, so
that the machine's drift falls on both alike: ``py`` (the echo handler, direct) and
``py-parent`` (its handler returns ``faas.call("py", params)``); then a quarter as many calls
of ``py-chain`` with ``n=10`` (each call makes one nested call with ``n-1``, down to 0: 10
nested calls). The
row of the issue: ``nested / direct`` at the median, target at most 2x. Prints a table and
writes JSON to ``bench/out/nested-<time>.json``.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import CallResult, invoke
from bench.functions import FUNCTIONS, PYTHON_RUNTIME, FunctionDef
from bench.machine import describe, one_line
from bench.measure import first_call, latencies
from bench.parts import Sizes, platform, say
from bench.platform import BenchPlatform
from bench.report import Row, table
from bench.stats import summary
from common.lifecycle import run_loop

OUT = Path(__file__).parent / "out"
CHAIN = 10
TARGET_RATIO = 2.0

_PARENT = "import faas\n\n\ndef handler(params):\n    return faas.call('py', params)\n"
_CHAIN = (
    "import faas\n\n\ndef handler(params):\n"
    "    n = params.get('n', 0)\n"
    "    return n if n <= 0 else faas.call('py-chain', {'n': n - 1})\n"
)
DIRECT = FUNCTIONS["py"]
PARENT = FunctionDef("py-parent", "py", {"main.py": _PARENT, "requirements.txt": ""}, "main:handler", calls="py")
CHAINED = FunctionDef("py-chain", "py", {"main.py": _CHAIN, "requirements.txt": ""}, "main:handler", calls="py-chain")


async def rounds(p: BenchPlatform, n: int) -> dict[str, list[CallResult]]:
    """``n`` rounds of a direct and a nested call in turn, then the chains: a chain of 10
    holds 11 containers of one function at once (more than a pool keeps by default), whose
    starts would fall on the direct and nested calls if they ran in the same rounds."""
    assert p.calls is not None
    out: dict[str, list[CallResult]] = {"direct": [], "nested": [], "chain": []}
    for i in range(n):
        out["direct"].append(await invoke(p.calls, DIRECT.name, {"i": i}))
        out["nested"].append(await invoke(p.calls, PARENT.name, {"i": i}))
    for _ in range(max(n // 4, 1)):
        out["chain"].append(await invoke(p.calls, CHAINED.name, {"n": CHAIN}))
    return out


async def main(calls: int, image: str, work: Path) -> dict[str, Any]:
    runtime = {**PYTHON_RUNTIME, "image": image}
    machine = await describe()
    async with platform(Sizes(), work, "adaptive") as p:
        for fn in (DIRECT, PARENT, CHAINED):
            await p.register(fn, runtime)
        say(f"warming up: {min(calls, 20)} rounds")
        for fn, params in ((DIRECT, {}), (PARENT, {}), (CHAINED, {"n": CHAIN})):
            await first_call(p, fn)
            assert p.calls is not None
            for _ in range(min(calls, 20)):
                await invoke(p.calls, fn.name, params)
        say(f"measuring: {calls} rounds of direct, nested, chain of {CHAIN}")
        measured = await rounds(p, calls)
    failed = {k: sum(not c.ok for c in v) for k, v in measured.items()}
    stats = {k: summary(latencies(v)) for k, v in measured.items()}
    return {"machine": one_line(machine), "calls": calls, "failed": failed, "stats": stats}


def rows(res: dict[str, Any]) -> list[Row]:
    st = res["stats"]
    ratio = st["nested"]["p50"] / st["direct"]["p50"] if st["direct"].get("p50") else float("nan")
    return [
        Row("warm call, direct (py)", st["direct"]),
        Row("nested call: parent -> child -> parent", st["nested"]),
        Row(
            "nested / direct (p50)",
            value=ratio,
            unit="x",
            target=f"<= {TARGET_RATIO:g}x",
            ok=ratio <= TARGET_RATIO,
        ),
        Row(
            f"chain of {CHAIN} nested calls", st["chain"], note=f"{st['chain'].get('p50', 0) / CHAIN:.1f} ms per level"
        ),
    ]


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.nested", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="measured rounds")
    parser.add_argument("--image", default=PYTHON_RUNTIME["image"], help="the Python runtime's image")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faas-bench-nested-") as work:
        res = run_loop(main(args.calls, args.image, Path(work)))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"nested-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2))
    print(table(rows(res)))
    print(f"failed calls: {res['failed']}; written to {path}")


if __name__ == "__main__":
    cli()
