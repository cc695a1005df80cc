"""The gate: is the newest commit worse than the stable segment it follows?

The newest commit's level is compared with the reference segment's (the median of its
per-commit medians) on log scale. What decides whether the difference is real is how
much this benchmark moves from commit to commit on this machine: rebuilds, runner
levels, machine state — scatter that repeated samples within one run cannot show. That
scale comes from :mod:`loadkit.history.stats.noise` (the series' own settled history, shrunk
towards its family's), with degrees of freedom that say how well it is known; a newest
run noisier than usual adds its excess sampling error.

The verdict and its confidence are posterior probabilities (see
:mod:`loadkit.history.stats.posterior`) under the noise law the evidence supports: the
family's pooled residuals' own shape where there are many, a two-piece t law fitted to
them where there are a few, Student's t at the scale's degrees of freedom where there
are none (see :func:`noise_law`). Beside it the gate gives one-sided p-values (the
larger of the t tail and the pooled tail), which the check uses to control false alarms
across all series; the effect's interval is what the noise alone allows (the wider of
the t law's and the pooled residuals' quantiles).
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loadkit.history.stats.laws import (
    GridLaw,
    NoiseLaw,
    ScaleMixedLaw,
    StudentLaw,
    TwoPieceLaw,
    reference_difference,
)
from loadkit.history.stats.noise import (
    ChangeLaw,
    NoisePrior,
    change_law,
    moderated_scale,
    series_profile,
)
from loadkit.history.stats.posterior import Posterior, posterior
from loadkit.history.stats.student import t_cdf, t_sf
from loadkit.runs.direction import Direction

_MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)
_MAD_TO_SD = 1.4826
_MAD_EFFICIENCY = 0.37
# Weight, in degrees of freedom, of the reference commits' typical sample spread.
_TYPICAL_SPREAD_DF = 10.0
_POWER = 0.8
# How much the measurement must favour "same" (Bayes factor) for a NO_CHANGE verdict:
# "substantial" evidence on Jeffreys' scale.
_MIN_SAME_EVIDENCE = 3.0
# The fewest degrees of freedom a noise law is given: at 2 or fewer a t law's tail is
# as heavy as the law of change sizes, and no jump, however large, could be told from
# noise; the p-values keep the scale's own degrees of freedom.
_MIN_LAW_DF = 3.0
# Degrees of freedom beyond which a scale counts as known.
_KNOWN_SCALE_DF = 100.0
# Grid half-width (noise units) of a difference law with no pooled residuals.
_STUDENT_REACH = 60.0
_TINY_SCALE = 1e-9
# The largest worsening searched for (log units: 3000x) and the bisection steps.
_MAX_DETECTABLE = 8.0
_BISECTIONS = 16


class Verdict(enum.Enum):
    """What the gate concludes about the newest commit."""

    REGRESSION = "REGRESSION"
    IMPROVEMENT = "IMPROVEMENT"
    NO_CHANGE = "NO_CHANGE"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class GateNoise:
    """Between-commit scatter of log levels for one series, as the gate uses it.

    ``scale`` and ``df`` are the moderated estimate (``df`` 0: unknown); ``pool`` holds
    the family's standardized residuals for the empirical tail, if any; ``change`` says
    how often and how far commits move this family's level; ``typical_within`` is the
    usual sampling error of a commit's median over the commits that taught the scale.
    """

    scale: float
    df: float
    pool: NoisePrior | None = None
    change: ChangeLaw | None = None
    typical_within: float | None = None


@dataclass(frozen=True)
class GateResult:
    """Gate outcome; ratios are newest over reference in raw units.

    ``confidence`` is the calibrated probability that ``verdict`` is right; for
    INCONCLUSIVE it is the confidence of the best decisive verdict, which fell short.
    ``detectable_effect`` is the relative change (0.07 = 7 %) found with 80 % power at
    the requested confidence; ``inf`` when the data cannot reach that confidence at all.
    ``noise_scale``/``noise_df`` are the between-commit scatter used (log units).
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
    noise_scale: float = math.nan
    noise_df: float = 0.0


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


def _median_error(spread: float, size: int) -> float:
    return _MEDIAN_EFFICIENCY * spread / math.sqrt(size) if size > 1 else 0.0


def typical_median_error(groups: Sequence[np.ndarray]) -> float | None:
    """The usual sampling error of one commit's median (log units) over ``groups``,
    each one commit's log measurements; None when no commit has samples."""
    sampled = [g for g in groups if g.size > 1]
    if not sampled:
        return None
    _, spreads = group_medians_and_spreads(sampled)
    sizes = np.array([g.size for g in sampled])
    return float(np.median(_MEDIAN_EFFICIENCY * spreads / np.sqrt(sizes)))


def _excess(own: float, size: int, typical: float) -> float:
    """Variance of a median's sampling error beyond the usual.

    A spread read off ten samples is itself noisy (the MAD's efficiency is 37 %), so it
    is shrunk towards the usual, worth ``_TYPICAL_SPREAD_DF`` degrees of freedom, before
    the excess is taken: one unlucky draw does not widen the gate."""
    own_df = _MAD_EFFICIENCY * (size - 1)
    shrunk = (own_df * own**2 + _TYPICAL_SPREAD_DF * typical**2) / (own_df + _TYPICAL_SPREAD_DF)
    return max(shrunk - typical**2, 0.0)


def _excess_sampling_error(
    new_log: np.ndarray, ref_logs: Sequence[np.ndarray], typical: float | None
) -> float:
    """Sampling error of newest-minus-reference beyond what the scale already holds.

    The between-commit scale already holds the usual within-run error of a commit's
    median (``typical``, from the commits that taught the scale); a newest run noisier
    than usual adds its excess, and so do reference commits noisier than usual (their
    median's share: a mean of their excesses over ``m``).
    """
    groups = [*ref_logs, new_log]
    if typical is None:
        typical = typical_median_error(ref_logs)
    if typical is None:
        return _median_error(_robust_sd(new_log), new_log.size)
    variance = 0.0
    if new_log.size > 1:
        variance += _excess(_median_error(_robust_sd(new_log), new_log.size), new_log.size, typical)
    reference = [
        _excess(_median_error(_robust_sd(g), g.size), g.size, typical)
        for g in groups[:-1]
        if g.size > 1
    ]
    if reference:
        variance += float(np.mean(reference)) / len(ref_logs)
    return math.sqrt(variance)


def reference_noise(reference_levels: np.ndarray, sign: int) -> GateNoise:
    """Noise learned from the reference commits alone (no history, no siblings)."""
    profile = series_profile(reference_levels, [], sign)
    scale, df = moderated_scale(profile, None)
    return GateNoise(scale=scale, df=df, change=change_law([profile]))


def run_gate(
    reference: Sequence[np.ndarray],
    newest: np.ndarray,
    direction: Direction,
    confidence: float,
    min_effect: float,
    noise: GateNoise | None = None,
    with_detectable: bool = True,
) -> GateResult:
    """Compare the newest commit's measurements with the reference commits'.

    Every array holds one commit's measurements (a single value when asv kept only its
    summary). At least one reference commit is needed. Without ``noise`` the scatter
    is learned from the reference commits alone. Without ``with_detectable`` the
    detectable effect is left unknown (screening is cheaper).
    """
    if not reference:
        raise ValueError("the gate needs at least one reference commit")
    ref_logs = [np.log(np.asarray(group, dtype=float)) for group in reference]
    new_log = np.log(np.asarray(newest, dtype=float))
    centres, _ = group_medians_and_spreads(ref_logs)
    sizes = np.array([group.size for group in ref_logs])
    m = centres.size
    sign = direction.sign
    shift = float(np.median(new_log) - np.median(centres))
    used_samples = new_log.size > 1 or bool(np.any(sizes > 1))
    if noise is None:
        noise = reference_noise(centres, sign)

    known = noise.df > 0
    pool = noise.pool if noise.pool is not None and noise.pool.tail.size else None
    df = max(noise.df, 1.0)
    worse_shift = sign * shift
    margin = math.log1p(min_effect)
    if known:
        excess = _excess_sampling_error(new_log, ref_logs, noise.typical_within)
        # A history that never moved makes any move real, yet keeps the arithmetic finite.
        unit = max(math.sqrt(noise.scale**2 + excess**2), _TINY_SCALE)
        reference_factor = 1.0 + (math.pi / 2.0 if m >= 3 else 1.0) / m
        t = worse_shift / (unit * math.sqrt(reference_factor))
        p_worse = t_sf(t, df)
        p_better = t_cdf(t, df)
        if pool is not None:
            p_worse = max(p_worse, pool.upper_tail(t))
            p_better = max(p_better, pool.lower_tail(t))
        law = difference_law(max(df, _MIN_LAW_DF), pool, m)
        tail = (1.0 - confidence) / 2.0
        # The true worse-positive shift is the observed one minus a noise draw.
        ends = (worse_shift - law.quantile(q) * unit for q in (tail, 1.0 - tail))
        low, high = sorted(sign * end for end in ends)
        change = noise.change or change_law([])
        belief = posterior(worse_shift, unit, law, change, margin)
        detectable = (
            detectable_effect(unit, law, change, margin, confidence)
            if with_detectable
            else math.inf
        )
    else:
        p_worse = p_better = 1.0
        low, high = -math.inf, math.inf
        belief = Posterior(worse=0.0, same=0.0, better=0.0)
        detectable = math.inf

    if belief.worse >= confidence and belief.worse >= belief.better:
        verdict, verdict_confidence = Verdict.REGRESSION, belief.worse
    elif belief.better >= confidence:
        verdict, verdict_confidence = Verdict.IMPROVEMENT, belief.better
    elif belief.same >= confidence and belief.same_evidence >= _MIN_SAME_EVIDENCE:
        verdict, verdict_confidence = Verdict.NO_CHANGE, belief.same
    else:
        verdict = Verdict.INCONCLUSIVE
        verdict_confidence = max(belief.worse, belief.better, belief.same)

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
        noise_scale=noise.scale if known else math.nan,
        noise_df=noise.df if known else 0.0,
    )


def noise_law(df: float, pool: NoisePrior | None) -> NoiseLaw:
    """The law of one commit's noise, in noise units, from the best evidence at hand.

    Many pooled residuals draw their own shape, widened by how uncertain this series'
    scale is (``df``); a few fit a two-piece t law, whose tails are kept at least as
    heavy as that uncertainty makes them; with none, Student's t at ``df``.
    """
    law = pool.law if pool is not None else None
    if isinstance(law, TwoPieceLaw):
        return TwoPieceLaw(
            upper=StudentLaw(min(law.upper.df, df), law.upper.scale),
            lower=StudentLaw(min(law.lower.df, df), law.lower.scale),
            upper_share=law.upper_share,
        )
    if law is not None:
        return ScaleMixedLaw(law, df) if df < _KNOWN_SCALE_DF else law
    return StudentLaw(df)


def difference_law(df: float, pool: NoisePrior | None, references: int) -> GridLaw:
    """The law of the newest commit's level minus its reference's, in noise units.

    Built once per family, scale df and reference length (see
    :func:`loadkit.history.stats.laws.reference_difference`).
    """
    key = (round(df, 6), references)
    if pool is None:
        return _student_difference(*key)
    law = pool.differences.get(key)
    if law is None:
        law = reference_difference(noise_law(df, pool), references, pool.reach)
        pool.differences[key] = law
    return law


@functools.lru_cache(maxsize=256)
def _student_difference(df: float, references: int) -> GridLaw:
    return reference_difference(StudentLaw(df), references, _STUDENT_REACH)


def detectable_effect(
    unit: float,
    law: GridLaw,
    change: ChangeLaw,
    margin: float,
    confidence: float,
) -> float:
    """Relative worsening the gate calls a regression with 80 % power.

    The smallest observed shift whose REGRESSION posterior reaches ``confidence`` (by
    bisection: it grows with the shift), plus the noise an 80 % chance must clear.
    """

    def sure(shift: float) -> bool:
        return posterior(shift, unit, law, change, margin).worse >= confidence

    low, high = 0.0, _MAX_DETECTABLE
    if not sure(high):
        return math.inf
    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        if sure(middle):
            high = middle
        else:
            low = middle
    return math.expm1(high - law.quantile(1.0 - _POWER) * unit)
