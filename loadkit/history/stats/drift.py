"""Gradual drift: a robust trend over the recent window, honest under autocorrelation.

Step detectors miss a regression that arrives a fraction of a percent per commit. The
Theil–Sen slope (median of pairwise slopes) measures such drift without being pulled by
outliers, and the Mann–Kendall test says whether it is real. Plain Mann–Kendall assumes
independent commits; with autocorrelated noise it reports trends that are not there. We
apply the Hamed–Rao variance correction, with the rank autocorrelations of the detrended
series modelled as AR(1) from a bias-corrected lag-1 estimate (short series
underestimate it badly), and use the corrected variance for both the test and the
slope's confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from loadkit.history.stats.changepoints import lag1_autocorrelation
from loadkit.history.stats.confidence import confidence_from_p


@dataclass(frozen=True)
class Drift:
    """Trend of the last ``window`` commits, in percent of the level per commit."""

    window: int
    pct_per_commit: float
    pct_low: float
    pct_high: float
    p_value: float
    confidence: float
    autocorrelation: float


def mann_kendall_s(values: np.ndarray) -> float:
    """Mann–Kendall S: concordant minus discordant pairs in time order."""
    differences = values[None, :] - values[:, None]
    return float(np.sign(differences[np.triu_indices(values.size, 1)]).sum())


def mann_kendall_variance(values: np.ndarray) -> float:
    """Variance of S under independence, with the usual correction for tied values."""
    n = values.size
    _, counts = np.unique(values, return_counts=True)
    ties = counts[counts > 1]
    tie_term = float(np.sum(ties * (ties - 1) * (2 * ties + 5)))
    return (n * (n - 1) * (2 * n + 5) - tie_term) / 18.0


def hamed_rao_factor(n: int, rho: float) -> float:
    """Hamed–Rao n/n* for rank autocorrelations ρ_k = ρ^k (AR(1)); at least 1."""
    if rho <= 0.0 or n < 3:
        return 1.0
    k = np.arange(1, n - 1)
    weights = (n - k) * (n - k - 1) * (n - k - 2)
    total = float(np.sum(weights * rho**k))
    return max(1.0, 1.0 + 2.0 * total / (n * (n - 1) * (n - 2)))


def pairwise_slopes(values: np.ndarray) -> np.ndarray:
    """All slopes (y_j − y_i)/(j − i) for i < j, sorted."""
    i, j = np.triu_indices(values.size, 1)
    return np.sort((values[j] - values[i]) / (j - i))


def estimate_drift(values: np.ndarray, confidence: float, window: int = 40) -> Drift | None:
    """Theil–Sen slope with Hamed–Rao-corrected Mann–Kendall test over the last commits.

    ``values`` are per-commit levels (positive). Returns ``None`` with fewer than 5
    commits, where neither the slope nor the test means anything.
    """
    recent = np.log(np.asarray(values, dtype=float)[-window:])
    n = recent.size
    if n < 5:
        return None
    slopes = pairwise_slopes(recent)
    slope = float(np.median(slopes))
    detrended = recent - slope * np.arange(n)
    rho = lag1_autocorrelation(stats.rankdata(detrended))
    variance = mann_kendall_variance(recent) * hamed_rao_factor(n, rho)
    s = mann_kendall_s(recent)
    if variance <= 0.0:
        z = 0.0
    else:
        z = (s - math.copysign(1.0, s)) / math.sqrt(variance) if s != 0 else 0.0
    p_value = float(2.0 * stats.norm.sf(abs(z)))
    spread = float(stats.norm.isf((1.0 - confidence) / 2.0)) * math.sqrt(max(variance, 0.0))
    count = slopes.size
    low_index = int(np.clip(math.floor((count - spread) / 2.0), 0, count - 1))
    high_index = int(np.clip(math.ceil((count + spread) / 2.0), 0, count - 1))

    def percent(log_slope: float) -> float:
        return 100.0 * math.expm1(log_slope)

    return Drift(
        window=n,
        pct_per_commit=percent(slope),
        pct_low=percent(float(slopes[low_index])),
        pct_high=percent(float(slopes[high_index])),
        p_value=p_value,
        confidence=confidence_from_p(p_value),
        autocorrelation=rho,
    )
