"""Change points in a benchmark's per-commit history, localized to a commit.

Method: binary segmentation with a permutation-tested CUSUM scan on log values. For every
split ``k`` of a segment a standardized two-sample statistic compares the commits before
and after it; the split with the largest absolute statistic is the candidate. Its p-value
is the share of random reorderings of the same values whose best split is as extreme, so
the test is exact for any i.i.d. noise shape — skewed, heavy-tailed or bimodal timings —
without assuming normality, and the maximum over splits is accounted for.

Benchmark noise is often autocorrelated (a warm cache, a noisy neighbour lasting several
commits), and a permutation null then raises false alarms — the failure of E-Divisive
style tools. We estimate the lag-1 autocorrelation of the residuals left after fitting
the candidate step (bias-corrected, and only when significantly positive) and deflate
the statistic, on the pooled two-sample t scale, by the AR(1) long-run variance factor
before comparing it with the permutation null.

A single split cannot see a regression that was fixed later; when the whole series
shows no step, each half is tested as well, with a Bonferroni share of the same
false-alarm budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loadkit.history.stats.confidence import confidence_from_p

_MAX_DRAWS = 2000
_BATCH = 250
_STOP_EXCEEDANCES = 10
# A split whose fitted Gumbel tail is below this share of alpha needs no more draws.
_GUMBEL_STOP = 0.01
# One-sided 5 % level for calling residual autocorrelation real (as Hamed–Rao do).
_SIGNIFICANT_Z = 1.645
# Bias of the lag-1 estimate after fitting two means at the best split, (a + bρ)/n.
_SPLIT_BIAS_INTERCEPT = 4.0
_SPLIT_BIAS_SLOPE = 8.0
# Two-sample t beyond which a leftover step on one side of a split is fitted, not
# mistaken for autocorrelation.
_REFINE_T = 6.0
# Share of the false-alarm budget spent on each half when the whole shows no step.
_HALF_SHARE = 0.1


@dataclass(frozen=True)
class ChangePoint:
    """A level shift that starts at commit ``index`` (the first commit at the new level).

    ``ratio`` is the new segment's median over the previous one's (raw units, so > 1 is
    an increase); ``ratio_low``/``ratio_high`` bound it at the requested confidence.
    """

    index: int
    ratio: float
    ratio_low: float
    ratio_high: float
    p_value: float
    confidence: float


def scan_statistics(values: np.ndarray, min_size: int) -> np.ndarray:
    """Standardized CUSUM (a two-sample z) for each split of each row of ``values``.

    ``values`` is ``(rows, n)``; column ``j`` of the result is the split before position
    ``min_size + j``. The scale is the row's overall standard deviation, which does not
    change under permutation, so permuted rows share the observed row's scale.
    """
    n = values.shape[-1]
    k = np.arange(min_size, n - min_size + 1)
    centred = values - values.mean(axis=-1, keepdims=True)
    cumulative = np.cumsum(centred, axis=-1)[..., k - 1]
    scale = values.std(axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    return cumulative / (scale * np.sqrt(k * (n - k) / n))


def permutation_p_value(
    segment: np.ndarray,
    statistic: float,
    min_size: int,
    alpha: float,
    rng: np.random.Generator,
    max_draws: int = _MAX_DRAWS,
) -> float:
    """Share of random reorderings of ``segment`` whose best split beats ``statistic``.

    Draws come in batches and stop early once the p-value is clearly above ``alpha``,
    so quiet series cost a few hundred permutations. A split beyond every draw gets
    the tail of a Gumbel law fitted to the drawn maxima (the limit law of a maximum
    over many splits): it stops drawing as soon as that tail is far below ``alpha``,
    and it tells a 50 % step from a 5 % one, where a bare count would give both
    ``1/(draws + 1)``.
    """
    n = segment.size
    exceed = 0
    drawn = 0
    maxima: list[np.ndarray] = []
    while drawn < max_draws:
        rows = min(_BATCH, max_draws - drawn)
        perms = rng.permuted(np.broadcast_to(segment, (rows, n)), axis=1)
        batch = np.abs(scan_statistics(perms, min_size)).max(axis=1)
        maxima.append(batch)
        exceed += int(np.count_nonzero(batch >= statistic))
        drawn += rows
        if exceed >= _STOP_EXCEEDANCES and (exceed + 1) / (drawn + 1) > 2.0 * alpha:
            break
        if exceed == 0 and gumbel_tail(np.concatenate(maxima), statistic) < alpha * _GUMBEL_STOP:
            break
    counted = (exceed + 1) / (drawn + 1)
    if exceed == 0:
        # Beyond every draw the count says only "below 1/(draws + 1)"; the fitted tail
        # says how far below.
        return min(counted, gumbel_tail(np.concatenate(maxima), statistic))
    return counted


def gumbel_tail(maxima: np.ndarray, statistic: float) -> float:
    """P(max ≥ statistic) under a Gumbel law with the maxima's mean and variance."""
    spread = float(np.std(maxima))
    if spread <= 0.0:
        return 0.0 if statistic > float(maxima[0]) else 1.0
    scale = spread * math.sqrt(6.0) / math.pi
    location = float(np.mean(maxima)) - np.euler_gamma * scale
    return float(-np.expm1(-np.exp(-(statistic - location) / scale)))


def lag1_autocorrelation(
    residuals: np.ndarray, bias_intercept: float = 2.0, bias_slope: float = 4.0
) -> float:
    """Bias-corrected lag-1 autocorrelation, clipped to [0, 0.9].

    From ``n`` residuals of a fitted model the raw estimate is biased low by about
    ``(a + bρ)/n``; we invert that. ``a = 2, b = 4`` suits residuals about a fitted line
    or mean; residuals about two means at a data-chosen split are biased about twice as
    much (measured by simulating AR(1) series of 40 commits), and their caller says so.
    Estimates that are not significantly positive count as 0, as in Hamed–Rao's use of
    significant lags only: correcting for noise in the estimate itself would cost power
    on independent series, and negative values would only make the tests more liberal.
    """
    n = residuals.size
    if n < 4:
        return 0.0
    centred = residuals - residuals.mean()
    denominator = float(np.dot(centred, centred))
    if denominator <= 0.0:
        return 0.0
    raw = float(np.dot(centred[:-1], centred[1:]) / denominator)
    rho = (raw + bias_intercept / n) / max(1.0 - bias_slope / n, 0.5)
    if rho < _SIGNIFICANT_Z / math.sqrt(n):
        return 0.0
    return min(rho, 0.9)


def long_run_factor(rho: float) -> float:
    """Variance inflation of a mean of AR(1) noise: (1 + ρ)/(1 − ρ)."""
    return (1.0 + rho) / (1.0 - rho)


def _best_split(values: np.ndarray, min_size: int) -> tuple[int, float, float]:
    """Best split of one segment: (split index, AR-adjusted |statistic|, AR factor)."""
    scan = scan_statistics(values[None, :], min_size)[0]
    j = int(np.argmax(np.abs(scan)))
    split = min_size + j
    residuals = np.concatenate(
        [_side_residuals(values[:split], min_size), _side_residuals(values[split:], min_size)]
    )
    factor = long_run_factor(
        lag1_autocorrelation(residuals, _SPLIT_BIAS_INTERCEPT, _SPLIT_BIAS_SLOPE)
    )
    return split, _shrink(float(abs(scan[j])), values.size, factor), factor


def _side_residuals(side: np.ndarray, min_size: int) -> np.ndarray:
    """Residuals of one side of a split, with a second level if a clear step remains.

    A staircase or a regression that was later fixed leaves a step on one side of the
    best split; read as autocorrelation it would shrink the statistic to nothing. A
    remaining split is fitted only when its own two-sample t is far beyond what noise
    gives (``_REFINE_T``), so autocorrelated noise without steps is rarely refitted.
    """
    centred = side - side.mean()
    n = side.size
    if n < 2 * min_size:
        return centred
    scan = scan_statistics(side[None, :], min_size)[0]
    j = int(np.argmax(np.abs(scan)))
    z_squared = min(float(scan[j]) ** 2, n * (1.0 - 1e-12))
    t = math.sqrt((n - 2) * z_squared / (n - z_squared))
    if t < _REFINE_T:
        return centred
    split = min_size + j
    return np.concatenate([side[:split] - side[:split].mean(), side[split:] - side[split:].mean()])


def _unshrink(z: float, n: int, factor: float) -> float:
    """Inverse of ``_shrink``: the statistic before the autocorrelation deflation."""
    if factor <= 1.0 or n <= 2:
        return z
    z_squared = min(z * z, n * (1.0 - 1e-12))
    t_squared = (n - 2) * z_squared / (n - z_squared) * factor
    return math.sqrt(n * t_squared / (n - 2 + t_squared))


def _shrink(z: float, n: int, factor: float) -> float:
    """Deflate a scan statistic for autocorrelation, on the unbounded two-sample t scale.

    The CUSUM ``z`` (scaled by the overall SD) can never exceed sqrt(n), so dividing it
    directly would cap a huge step below significance. ``t² = (n−2)z²/(n−z²)`` is the
    pooled-variance t at the same split, a monotone map, so the permutation null of ``z``
    still applies after mapping the deflated ``t`` back.
    """
    if factor <= 1.0 or n <= 2:
        return z
    z_squared = min(z * z, n * (1.0 - 1e-12))
    t_squared = (n - 2) * z_squared / (n - z_squared) / factor
    return math.sqrt(n * t_squared / (n - 2 + t_squared))


def _test_segment(
    values: np.ndarray,
    start: int,
    stop: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int,
    min_factor: float = 1.0,
) -> tuple[int, float, float] | None:
    """Best split of ``values[start:stop]`` as ``(index, p_value, ar_factor)``, if any.

    ``min_factor`` carries an autocorrelation factor measured on a longer stretch, which
    a short segment cannot estimate well by itself.
    """
    segment = values[start:stop]
    if stop - start < 2 * min_size or np.ptp(segment) == 0.0:
        return None
    split, statistic, factor = _best_split(segment, min_size)
    if min_factor > factor:
        statistic = _shrink(_unshrink(statistic, segment.size, factor), segment.size, min_factor)
        factor = min_factor
    draws = max(_MAX_DRAWS, math.ceil(_STOP_EXCEEDANCES / alpha))
    p_value = permutation_p_value(segment, statistic, min_size, alpha, rng, draws)
    return start + split, p_value, factor


def _first_split(
    values: np.ndarray, alpha: float, rng: np.random.Generator, min_size: int
) -> tuple[int, float, float] | None:
    """The first change of the whole series, also looking for one that was later undone.

    A single split cannot see a regression that was fixed a few commits later (the
    levels before and after the bump agree), so when the whole series shows no step,
    each half is tested too. The three tests share ``alpha`` (Bonferroni: most of it for
    the whole series, ``_HALF_SHARE`` for each half) and report adjusted p-values.
    """
    n = values.size
    whole = _test_segment(values, 0, n, alpha * (1 - 2 * _HALF_SHARE), rng, min_size)
    if whole is None:
        return None
    index, p_value, factor = whole
    adjusted = min(1.0, p_value / (1 - 2 * _HALF_SHARE))
    if adjusted <= alpha or n < 4 * min_size:
        return (index, adjusted, factor) if adjusted <= alpha else None
    best = None
    for start, stop in ((0, n // 2), (n // 2, n)):
        half = _test_segment(values, start, stop, alpha * _HALF_SHARE, rng, min_size, factor)
        if half is None:
            continue
        candidate = (half[0], min(1.0, half[1] / _HALF_SHARE), half[2])
        if candidate[1] <= alpha and (best is None or candidate[1] < best[1]):
            best = candidate
    return best


def find_change_points(
    values: np.ndarray, alpha: float, rng: np.random.Generator, min_size: int = 3
) -> list[tuple[int, float, float]]:
    """Binary segmentation: ``(index, p_value, ar_factor)`` for every accepted split.

    A segment is split only when its best split's p-value is at most ``alpha`` and both
    parts keep at least ``min_size`` commits.
    """
    first = _first_split(values, alpha, rng, min_size)
    if first is None:
        return []
    found = [first]
    pending = [(0, first[0]), (first[0], values.size)]
    while pending:
        start, stop = pending.pop()
        result = _test_segment(values, start, stop, alpha, rng, min_size)
        if result is not None and result[1] <= alpha:
            found.append(result)
            pending.append((start, result[0]))
            pending.append((result[0], stop))
    found.sort()
    return found


def describe_change_points(
    values: np.ndarray,
    found: list[tuple[int, float, float]],
    confidence: float,
    rng: np.random.Generator,
    draws: int = 400,
) -> list[ChangePoint]:
    """Size and confidence interval of each change, between its neighbouring segments.

    The interval comes from a bootstrap of the two segments' medians (log scale), widened
    by the AR(1) factor so autocorrelated noise does not produce falsely tight intervals.
    """
    bounds = [0, *[index for index, _, _ in found], values.size]
    logs = np.log(values)
    tail = (1.0 - confidence) / 2.0
    described = []
    for position, (index, p_value, factor) in enumerate(found):
        before = logs[bounds[position] : index]
        after = logs[index : bounds[position + 2]]
        shift = float(np.median(after) - np.median(before))
        boot_after = np.median(rng.choice(after, (draws, after.size)), axis=1)
        boot_before = np.median(rng.choice(before, (draws, before.size)), axis=1)
        deviations = (boot_after - boot_before - shift) * math.sqrt(factor)
        low, high = np.quantile(deviations, [tail, 1.0 - tail])
        described.append(
            ChangePoint(
                index=index,
                ratio=math.exp(shift),
                ratio_low=math.exp(shift + float(low)),
                ratio_high=math.exp(shift + float(high)),
                p_value=p_value,
                confidence=confidence_from_p(p_value),
            )
        )
    return described
