"""The gate: is the newest commit worse than the stable segment it follows?

Two sources of noise decide whether a difference is real: the spread of repeated
samples within one commit's run, and the scatter between commits (rebuilds, machine
state) that samples from a single run cannot show. The reference segment's per-commit
medians measure the total scatter; their within-commit sampling error is subtracted to
leave the between-commit part, which the newest commit suffers too.

The p-value is a Student t on log ratios. Unless the reference commits' levels look
normal (Shapiro–Wilk, with at least 12 commits), it is floored by what the data can
show without a noise model: with ``m`` reference commits the newest can be at most
"beyond all of them" (rank p = 1/(m+1)) unless it is far beyond — Cantelli's inequality
bounds that tail for any noise shape. Skewed between-commit noise, where a t tail
would raise false alarms, fails the normality check and keeps the floor. The effect's
interval comes from a hierarchical bootstrap (commits, then samples within commits,
plus between-commit scatter for the newest).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from loadkit.history.confidence import (
    confidence_from_p,
    minimum_detectable_shift,
    p_for_confidence,
)
from loadkit.history.direction import Direction

_MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)
_MAD_TO_SD = 1.4826
_NORMALITY_MIN_COMMITS = 12
_NORMALITY_LEVEL = 0.05


class Verdict(enum.Enum):
    """What the gate concludes about the newest commit."""

    REGRESSION = "REGRESSION"
    IMPROVEMENT = "IMPROVEMENT"
    NO_CHANGE = "NO_CHANGE"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class GateResult:
    """Gate outcome; ratios are newest over reference in raw units.

    ``confidence`` is the calibrated probability that ``verdict`` is right; for
    INCONCLUSIVE it is the confidence of the best decisive verdict, which fell short.
    ``detectable_effect`` is the relative change (0.07 = 7 %) found with 80 % power at
    the requested confidence; ``inf`` when the data cannot reach that confidence at all.
    """

    verdict: Verdict
    ratio: float
    ratio_low: float
    ratio_high: float
    confidence: float
    p_worse: float
    p_better: float
    detectable_effect: float
    reference_commits: int
    used_samples: bool


def _robust_sd(values: np.ndarray) -> float:
    """Scale from the median absolute deviation, falling back to the SD when MAD is 0."""
    if values.size < 2:
        return 0.0
    mad = float(np.median(np.abs(values - np.median(values))))
    return _MAD_TO_SD * mad if mad > 0 else float(np.std(values, ddof=1))


def group_medians_and_spreads(groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust SD of every group, vectorized over groups of equal size.

    Same definitions as ``np.median`` and ``_robust_sd``; a history has hundreds of
    commits and the gate runs several times per series, so this is the hot path.
    """
    medians = np.empty(len(groups))
    spreads = np.zeros(len(groups))
    sizes = np.array([group.size for group in groups])
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        stacked = np.stack([groups[i] for i in members])
        centre = np.median(stacked, axis=1)
        medians[members] = centre
        if size < 2:
            continue
        mad = np.median(np.abs(stacked - centre[:, None]), axis=1)
        fallback = np.std(stacked, axis=1, ddof=1)
        spreads[members] = np.where(mad > 0, _MAD_TO_SD * mad, fallback)
    return medians, spreads


def _newest_median_error(new_log: np.ndarray, ref_spreads: np.ndarray) -> float:
    """Sampling error of the newest commit's median, from the pooled sample spread.

    Ten samples give a poor spread estimate, and an underestimate makes the gate
    overconfident; the spread of samples is a property of the benchmark, so it is pooled
    over the reference commits (root mean square of robust SDs). The newest commit's own
    spread wins when larger — it may have become noisier.
    """
    if new_log.size < 2:
        return 0.0
    spreads = ref_spreads[ref_spreads > 0]
    pooled = float(np.median(spreads)) if spreads.size else 0.0
    spread = max(_robust_sd(new_log), pooled)
    return _MEDIAN_EFFICIENCY * spread / math.sqrt(new_log.size)


def _bootstrap_medians(
    groups: Sequence[np.ndarray], draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``(draws, len(groups))`` medians of each group resampled with replacement.

    Groups of equal size are resampled together, so a series with one value per commit
    (or asv's fixed repeat count) costs one vectorized draw.
    """
    medians = np.empty((draws, len(groups)))
    sizes = np.array([group.size for group in groups])
    for size in np.unique(sizes):
        members = np.flatnonzero(sizes == size)
        if size == 1:
            medians[:, members] = np.array([groups[i][0] for i in members])[None, :]
            continue
        stacked = np.stack([groups[i] for i in members])
        picks = rng.integers(0, size, (draws, members.size, size))
        resampled = np.take_along_axis(np.broadcast_to(stacked, picks.shape), picks, axis=2)
        ordered = np.sort(resampled, axis=2)
        middle = size // 2
        if size % 2:
            medians[:, members] = ordered[:, :, middle]
        else:
            medians[:, members] = 0.5 * (ordered[:, :, middle - 1] + ordered[:, :, middle])
    return medians


def _tail_p(
    badness: float,
    standard_error: float,
    df: int,
    reference_badness: np.ndarray,
    floored: bool = True,
) -> float:
    """One-sided p-value that the newest commit (``badness`` above the reference) is worse.

    ``reference_badness`` holds the reference commits' own deviations on the same scale;
    the rank floor counts how many of them are at least as bad as the newest commit.
    """
    if standard_error <= 0.0:
        p_t = 0.0 if badness > 0 else 1.0
    else:
        p_t = float(stats.t.sf(badness / standard_error, df))
    if not floored:
        return p_t
    m = reference_badness.size
    p_rank = (1.0 + float(np.count_nonzero(reference_badness >= badness))) / (m + 1.0)
    if standard_error > 0.0 and badness > 0:
        p_cantelli = 1.0 / (1.0 + (badness / standard_error) ** 2)
    elif badness > 0:
        p_cantelli = 0.0
    else:
        p_cantelli = 1.0
    return max(p_t, min(p_rank, p_cantelli))


def run_gate(
    reference: Sequence[np.ndarray],
    newest: np.ndarray,
    direction: Direction,
    confidence: float,
    min_effect: float,
    rng: np.random.Generator,
    draws: int = 1000,
    history_scatter: tuple[float, int] | None = None,
    with_interval: bool = True,
) -> GateResult:
    """Compare the newest commit's samples with the reference commits' samples.

    Every array holds one commit's measurements (a single value when asv kept only its
    summary). At least one reference commit is needed. ``history_scatter`` is the
    between-commit standard deviation of log levels measured over the whole history
    (around each segment's level) with its degrees of freedom; see ``scoring``.
    Without ``with_interval`` the bootstrap is skipped: the interval is unbounded and
    only REGRESSION, IMPROVEMENT or INCONCLUSIVE can come out (screening is cheaper).
    """
    if not reference:
        raise ValueError("the gate needs at least one reference commit")
    ref_logs = [np.log(np.asarray(group, dtype=float)) for group in reference]
    new_log = np.log(np.asarray(newest, dtype=float))
    centres, spreads = group_medians_and_spreads(ref_logs)
    sizes = np.array([group.size for group in ref_logs])
    m = centres.size
    shift = float(np.median(new_log) - np.median(centres))
    sign = direction.sign
    used_samples = new_log.size > 1 or any(group.size > 1 for group in ref_logs)

    within = _MEDIAN_EFFICIENCY * spreads / np.sqrt(sizes)
    new_within = _newest_median_error(new_log, spreads)
    estimates = [(float(np.std(centres, ddof=1)), m - 1)] if m >= 2 else []
    if history_scatter is not None and history_scatter[1] >= 1:
        estimates.append(history_scatter)
    if estimates:
        # The larger of the reference's own scatter and the whole history's: a short
        # reference cannot show how much this benchmark moves between commits.
        total_sd, df = max(estimates)
        between_var = max(0.0, total_sd**2 - float(np.mean(within**2)))
    elif new_log.size > 1:
        # No history to learn from: assume commits scatter as much as samples do.
        total_sd = _robust_sd(new_log)
        between_var = total_sd**2
        df = max(new_log.size - 1, 1)
    else:
        total_sd = math.inf
        between_var = math.inf
        df = 1
    standard_error = math.sqrt(
        new_within**2 + between_var + (_MEDIAN_EFFICIENCY * total_sd) ** 2 / m
    )

    floored = not reference_looks_normal(centres)
    deviations = centres - np.median(centres)
    p_worse = _tail_p(sign * shift, standard_error, df, sign * deviations, floored)
    p_better = _tail_p(-sign * shift, standard_error, df, -sign * deviations, floored)

    level_tail = (1.0 - confidence) / 2.0
    if math.isfinite(standard_error) and with_interval:
        ref_boot = np.median(_bootstrap_medians(ref_logs, draws, rng), axis=1)
        new_boot = _bootstrap_medians([new_log], draws, rng)[:, 0]
        new_boot = new_boot + rng.normal(0.0, math.sqrt(between_var), draws)
        boot = new_boot - ref_boot
        low, high = (float(q) for q in np.quantile(boot, [level_tail, 1.0 - level_tail]))
        margin = math.log1p(min_effect)
        p_equivalent = float(np.mean(np.abs(boot) < margin))
        equivalent = -margin < low and high < margin
    else:
        low, high, p_equivalent, equivalent = -math.inf, math.inf, 0.0, False

    conf_worse = confidence_from_p(p_worse)
    conf_better = confidence_from_p(p_better)
    if conf_worse >= confidence and conf_worse >= conf_better:
        verdict, verdict_confidence = Verdict.REGRESSION, conf_worse
    elif conf_better >= confidence:
        verdict, verdict_confidence = Verdict.IMPROVEMENT, conf_better
    elif equivalent:
        verdict, verdict_confidence = Verdict.NO_CHANGE, p_equivalent
    else:
        verdict = Verdict.INCONCLUSIVE
        verdict_confidence = max(conf_worse, conf_better, p_equivalent)

    detectable = _detectable_effect(standard_error, confidence, df, m, floored)
    return GateResult(
        verdict=verdict,
        ratio=math.exp(shift),
        ratio_low=math.exp(low),
        ratio_high=math.exp(high),
        confidence=verdict_confidence,
        p_worse=p_worse,
        p_better=p_better,
        detectable_effect=detectable,
        reference_commits=m,
        used_samples=used_samples,
    )


def reference_looks_normal(centres: np.ndarray) -> bool:
    """Whether the reference commits' levels are plausibly normal (Shapiro–Wilk, 5 %).

    Only then is the t tail trusted beyond what the ranks and Cantelli can show. It
    needs ``_NORMALITY_MIN_COMMITS`` commits to have any power; skewed (log-normal) or
    lumpy between-commit noise fails it and keeps the distribution-free floor.
    """
    if centres.size < _NORMALITY_MIN_COMMITS or np.ptp(centres) == 0.0:
        return False
    return bool(stats.shapiro(centres).pvalue > _NORMALITY_LEVEL)


def _detectable_effect(
    standard_error: float, confidence: float, df: int, m: int, floored: bool = True
) -> float:
    """Relative shift the gate detects with 80 % power, honouring the p-value floors."""
    if not math.isfinite(standard_error):
        return math.inf
    alpha = p_for_confidence(confidence)
    shift = minimum_detectable_shift(standard_error, confidence, df=df)
    if floored and 1.0 / (m + 1.0) > alpha and standard_error > 0:
        # Beyond every reference commit is not enough; Cantelli needs t >= sqrt(1/α − 1).
        shift = max(shift, math.sqrt(1.0 / alpha - 1.0) * standard_error)
    return math.expm1(shift)
