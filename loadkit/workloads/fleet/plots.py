"""Plots of the fleet's measurements (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadkit.workloads.fleet.scenarios import StepLoad


def plot_autoscale(trace: list[tuple[float, int]], step: StepLoad, needed: int, path: Path) -> Path:
    """Agents over time against the arrival rate: the lead or lag of the autoscaler is
    easier to see than to read from two numbers."""
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ts = [t for t, _ in trace]
    ax.step(ts, [n for _, n in trace], where="post", color="tab:blue", label="agents")
    ax.axhline(needed, color="tab:blue", linestyle=":", linewidth=1, label="needed at peak")
    ax.set_xlabel("seconds")
    ax.set_ylabel("agents")
    rate = ax.twinx()
    edges = [0, step.low_s, step.low_s + step.high_s, step.low_s + step.high_s + step.cooldown_s]
    rates = [step.low_rate_per_s, step.high_rate_per_s, step.low_rate_per_s]
    rate.stairs(rates, edges, color="tab:orange", alpha=0.6, label="arrival rate")
    rate.set_ylabel("tasks/s")
    rate.set_ylim(0, math.ceil(step.high_rate_per_s * 1.15))
    ax.set_ylim(0, max(max((n for _, n in trace), default=1), needed) * 1.15)
    handles = ax.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8)
    ax.set_title("predictive autoscaler through a load step")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
