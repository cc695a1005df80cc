"""The speedup-versus-document-size plot (matplotlib, no display needed)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GOAL_RATIO = 52  # the goals: 52x pure Python, 100x ast.parse
GOAL_VS_AST_RATIO = 100
_LABEL = re.compile(r"^speedup(_vs_ast)?_ratio_(\d+)(kb|mb)$")
_UNIT = {"kb": 1_000, "mb": 1_000_000}

Point = tuple[int, float, float | None]  # size in bytes, vs pure Python, vs ast.parse


def points_from_metrics(metrics: Mapping[str, float]) -> list[Point]:
    """Per-size points from flat metrics named ``speedup_ratio_200kb`` and
    ``speedup_vs_ast_ratio_200kb``."""
    python: dict[int, float] = {}
    native: dict[int, float] = {}
    for name, value in metrics.items():
        m = _LABEL.match(name)
        if m:
            size = int(m.group(2)) * _UNIT[m.group(3)]
            (native if m.group(1) else python)[size] = value
    return [(size, python[size], native.get(size)) for size in sorted(python)]


def plot_speedup(
    metrics_or_points: Mapping[str, float] | Iterable[Point], path: Path | str
) -> Path:
    """WASM speedup over pure Python and over ``ast.parse`` against document size; the
    question is how the ratio changes with size, and a line shows it at a glance. With
    metrics that hold them, points beside the 1 MB one show the ratio on random
    expression trees (``speedup_ratio_random_trees``, the stress case) and on one line
    repeated (``speedup_ratio_repeated_line``, where the CPU predicts the branches)."""
    repeated = trees = None
    if isinstance(metrics_or_points, Mapping):
        points = points_from_metrics(metrics_or_points)
        repeated = metrics_or_points.get("speedup_ratio_repeated_line")
        trees = metrics_or_points.get("speedup_ratio_random_trees")
    else:
        points = sorted(metrics_or_points)
    if not points:
        raise ValueError("no speedup points to plot (expected speedup_ratio_<size> metrics)")
    path = Path(path)
    sizes = [p[0] / 1e6 for p in points]
    fig, ax = plt.subplots(figsize=(7, 3.8), dpi=110)
    ax.plot(sizes, [p[1] for p in points], "o-", color="tab:blue",
            label="vs pure Python, real code")  # fmt: skip
    native = [(s, p[2]) for s, p in zip(sizes, points, strict=True) if p[2] is not None]
    if native:
        ax.plot(*zip(*native, strict=True), "s--", color="tab:orange", label="vs CPython ast.parse")
    ax.axhline(
        GOAL_RATIO, color="tab:blue", linestyle=":", linewidth=1, label=f"goal {GOAL_RATIO}x"
    )
    if native:
        ax.axhline(GOAL_VS_AST_RATIO, color="tab:orange", linestyle=":", linewidth=1,
                   label=f"goal {GOAL_VS_AST_RATIO}x")  # fmt: skip
    # (size, ratio, label to the right): the 1 MB side points are labelled beside them
    labelled = [(s, p[1], False) for s, p in zip(sizes, points, strict=True)]
    for value, marker, color, what in (
        (repeated, "D", "tab:green", "one line repeated"),
        (trees, "v", "tab:red", "random trees"),
    ):
        if value:
            ax.plot([1.0], [value], marker, color=color, label=f"vs pure Python, {what}")
            labelled.append((1.0, value, True))
    for s, value, beside in labelled:
        ax.annotate(f"{value:.0f}x", (s, value), textcoords="offset points",
                    xytext=(7, -3) if beside else (0, 6), ha="left" if beside else "center",
                    fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.1)  # room for the labels beside the 1 MB points
    ax.set_xticks(sizes, [f"{s:g} MB" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("document size")
    ax.set_ylabel("speedup (x)")
    goals = [GOAL_RATIO, GOAL_VS_AST_RATIO] if native else [GOAL_RATIO]
    tops = [*goals, *(v for _, v, _ in labelled), *(v for _, v in native)]
    ax.set_ylim(0, max(tops) * 1.2)
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_title("WASM parser speedup by document size (same run, medians)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
