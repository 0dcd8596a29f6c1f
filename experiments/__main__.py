"""``python -m experiments [run|plot]``: with no command, run then plot."""

import argparse
import asyncio
import sys
from pathlib import Path

from experiments.arrivals import PATTERNS
from experiments.results import read_rows
from experiments.summarize import groups, measured, text_table, write_summary
from experiments.workload import DEFAULT_FUNCTIONS, POLICIES, Workload

OUT = Path(__file__).parent / "out"


def _list(raw: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in raw.split(",") if x.strip())


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments", description="Policies compared on one workload.")
    ap.add_argument("command", nargs="?", choices=("run", "plot", "all"), default="all")
    ap.add_argument("--out", type=Path, default=OUT, help="where calls.csv, run.json and the PNGs go")
    ap.add_argument("--csv", type=Path, help="plot: the calls CSV (default OUT/calls.csv)")
    d = Workload()
    ap.add_argument("--policies", type=_list, default=POLICIES, help="comma-separated (default: all four)")
    ap.add_argument(
        "--functions",
        type=_list,
        default=DEFAULT_FUNCTIONS,
        help=f"comma-separated, of py, py-deps, node, node-deps, py-cmd, node-cmd (default {','.join(d.functions)})",
    )
    ap.add_argument("--patterns", type=_list, default=PATTERNS, help="comma-separated (default: all four)")
    ap.add_argument("--calls", type=int, default=d.sequential_calls, help="sequential calls per function")
    ap.add_argument("--burst", type=int, default=d.burst_size, help="calls in a burst")
    ap.add_argument("--poisson-calls", type=int, default=d.poisson_calls, help="calls of the Poisson pattern")
    ap.add_argument("--rate", type=float, default=d.poisson_rate, help="Poisson arrival rate, calls/s")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--slots", type=int, default=d.slots, help="the agent's slots")
    return ap


def workload_of(args: argparse.Namespace) -> Workload:
    return Workload(
        policies=args.policies,
        functions=args.functions,
        patterns=args.patterns,
        sequential_calls=args.calls,
        burst_size=args.burst,
        poisson_calls=args.poisson_calls,
        poisson_rate=args.rate,
        seed=args.seed,
        slots=args.slots,
    )


def plot(csv_path: Path, out: Path) -> None:
    from experiments.plot import plot_all  # matplotlib only when plotting

    rows = list(read_rows(csv_path))
    gs = groups(measured(rows))
    if not gs:
        raise SystemExit(f"{csv_path}: no measured calls to plot")
    out.mkdir(parents=True, exist_ok=True)
    write_summary(out / "summary.csv", gs)
    print(text_table(gs))
    for path in plot_all(rows, out):
        print(f"wrote {path}")
    print(f"wrote {out / 'summary.csv'}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        w = workload_of(args)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    csv_path = args.csv or args.out / "calls.csv"
    if args.command in ("run", "all"):
        from experiments.runner import run  # the platform only when running

        csv_path = asyncio.run(run(w, args.out))
    if args.command in ("plot", "all"):
        plot(csv_path, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
