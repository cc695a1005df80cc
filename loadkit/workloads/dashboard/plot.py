"""The latency histogram of the dashboard load test, as a PNG for the run report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_latency_histogram(
    samples_ms: Sequence[float] | np.ndarray, path: str | Path, title: str | None = None
) -> Path:
    """Histogram of per-message latencies (log-spaced bins, p50/p99 marked); returns the
    path written. A person reads the tail's shape here faster than from percentiles."""
    # Imported only when a plot is drawn: matplotlib costs every worker half a second.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.asarray(samples_ms, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ValueError("no latency samples to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    low = max(float(data.min()), 0.01)
    high = max(float(data.max()), low * 1.01)
    bins = np.geomspace(low, high, 60)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    try:
        ax.hist(np.clip(data, low, None), bins=bins, color="#2f6fd6", alpha=0.85)
        ax.set_xscale("log")
        for q, colour in ((50, "#2e9e5b"), (99, "#d64545")):
            v = float(np.percentile(data, q))
            ax.axvline(v, color=colour, linestyle="--", linewidth=1.2, label=f"p{q} {v:.1f} ms")
        ax.set_xlabel("send -> receipt latency (ms, log scale)")
        ax.set_ylabel("messages")
        ax.set_title(title or f"dashboard WebSocket latency, {data.size} messages")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
