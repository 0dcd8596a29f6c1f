"""Figures from a calls CSV (matplotlib, no display needed).

* ``latency_cdf.png``: the distribution of call latency per policy, one panel per arrival
  pattern (all functions together; log scale);
* ``latency_box.png``: latency per function and policy, one panel per pattern (log scale);
* ``cold_starts.png``: the share of calls that started a container of their own, per
  policy and function, one panel per pattern.
"""

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from experiments.results import CallRow
from experiments.summarize import groups, measured

POLICY_ORDER = ("none", "warm-runtime", "warm-function", "adaptive")
COLORS = {"none": "#d62728", "warm-runtime": "#ff7f0e", "warm-function": "#2ca02c", "adaptive": "#1f77b4"}
PATTERN_ORDER = ("sequential", "burst", "poisson")


def _ordered(values: set[str], order: Sequence[str]) -> list[str]:
    return [v for v in order if v in values] + sorted(values - set(order))


def _color(policy: str) -> str:
    return COLORS.get(policy, "#1f77b4")


def _panels(n: int, width: float = 5.0, height: float = 4.4) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def _finish(fig: Figure, title: str, policies: list[str], path: Path, labels: dict[str, str] | None = None) -> None:
    """One legend for all panels, below them; title; save."""
    handles = [Patch(facecolor=_color(p), alpha=0.8, label=(labels or {}).get(p, p)) for p in policies]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_cdf(rows: list[CallRow], path: Path) -> None:
    ok = [r for r in measured(rows) if r.ok]
    patterns = _ordered({r.pattern for r in ok}, PATTERN_ORDER)
    policies = _ordered({r.policy for r in ok}, POLICY_ORDER)
    fig, axes = _panels(max(len(patterns), 1))
    for ax, pattern in zip(axes, patterns, strict=False):
        for policy in policies:
            xs = sorted(r.latency_ms for r in ok if r.pattern == pattern and r.policy == policy)
            if not xs:
                continue
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", color=_color(policy), linewidth=1.8)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{pattern} ({sum(r.pattern == pattern for r in ok)} calls)")
        ax.set_xlabel("latency, ms (HTTP sync invoke, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("share of calls at or below")
    _finish(fig, "Call latency by invocation policy (all functions)", policies, path)


def latency_box(rows: list[CallRow], path: Path) -> None:
    ok = [r for r in measured(rows) if r.ok]
    patterns = _ordered({r.pattern for r in ok}, PATTERN_ORDER)
    policies = _ordered({r.policy for r in ok}, POLICY_ORDER)
    functions = sorted({r.function for r in ok})
    fig, axes = _panels(max(len(patterns), 1), width=5.5)
    width = 0.8 / max(len(policies), 1)
    for ax, pattern in zip(axes, patterns, strict=False):
        for j, policy in enumerate(policies):
            data, pos = [], []
            for i, fn in enumerate(functions):
                xs = [r.latency_ms for r in ok if (r.pattern, r.policy, r.function) == (pattern, policy, fn)]
                if xs:
                    data.append(xs)
                    pos.append(i + (j - (len(policies) - 1) / 2) * width)
            if not data:
                continue
            bp = ax.boxplot(
                data,
                positions=pos,
                widths=width * 0.9,
                patch_artist=True,
                showfliers=True,
                medianprops={"color": "black", "linewidth": 1.5},
            )
            for box in bp["boxes"]:
                box.set(facecolor=_color(policy), alpha=0.7)
            for flier in bp["fliers"]:
                flier.set(markersize=3, markeredgecolor=_color(policy))
        ax.set_yscale("log")
        ax.set_xticks(range(len(functions)), functions)
        ax.set_title(pattern)
        ax.set_ylabel("latency, ms (log scale)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    _finish(fig, "Call latency per function and policy (box: quartiles, whiskers: 1.5 IQR)", policies, path)


def cold_starts(rows: list[CallRow], path: Path) -> None:
    gs = groups(measured(rows))
    patterns = _ordered({g.pattern for g in gs}, PATTERN_ORDER)
    policies = _ordered({g.policy for g in gs}, POLICY_ORDER)
    functions = sorted({g.function for g in gs})
    fig, axes = _panels(max(len(patterns), 1))
    width = 0.8 / max(len(policies), 1)
    for ax, pattern in zip(axes, patterns, strict=False):
        for j, policy in enumerate(policies):
            xs, shares, labels = [], [], []
            for i, fn in enumerate(functions):
                g = next((g for g in gs if (g.pattern, g.policy, g.function) == (pattern, policy, fn)), None)
                if g is None:
                    continue
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                shares.append(100 * g.cold_share)
                labels.append(f"{g.cold}/{g.calls}")
            bars = ax.bar(xs, shares, width * 0.95, color=_color(policy), alpha=0.8)
            ax.bar_label(bars, labels, fontsize=7, padding=2, rotation=90)
        ax.set_xticks(range(len(functions)), functions)
        ax.set_ylim(0, 125)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(pattern)
        ax.set_ylabel("calls that started a container, %")
        ax.grid(True, axis="y", alpha=0.3)
    legend = {}
    for p in policies:
        mine = [g for g in gs if g.policy == p]
        legend[p] = f"{p}: {sum(g.cold for g in mine)}/{sum(g.calls for g in mine)} cold"
    _finish(fig, "Calls that started a container of their own (labels: cold / calls)", policies, path, legend)


def plot_all(rows: list[CallRow], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "latency_cdf.png", out / "latency_box.png", out / "cold_starts.png"]
    for fn, path in zip((latency_cdf, latency_box, cold_starts), paths, strict=True):
        fn(rows, path)
    return paths
