"""How much a benchmark moves between commits, and how often it changes: its own
history, and its siblings'.

A gate is only as good as its noise estimate. A series with a long settled history
knows its own between-commit scatter; a new benchmark, or one whose history is three
commits long, does not. On one machine, though, benchmarks of one family (same module,
unit and environment) share runners, builds and timers, so their scatter is alike.
Their scales form a prior and each series' own estimate is shrunk towards it by how
little history it has: empirical Bayes, as in limma's moderated t (Smyth 2004), where
the prior adds ``df`` degrees of freedom at scale ``scale``.

Scatter is measured robustly: residuals of log levels around each segment's median,
winsorized at 2.5 robust SDs, so one wild commit in the reference cannot double the
scale and flip a verdict. What the winsorizing leaves out, the tail keeps: the family's
pooled standardized residuals show how often a commit lands far from its level by
chance, per direction (runner levels, one-off blips), which a normal model cannot know
(see :mod:`loadkit.history.stats.laws`). The same histories say how often a commit changes
this family's performance at all, and by how much: the change points found per commit
(see :mod:`loadkit.history.stats.posterior`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import special, stats

from loadkit.history.stats.laws import (
    EmpiricalLaw,
    Exceedances,
    GridLaw,
    NoiseLaw,
    fit_exceedances,
    fitted_two_piece,
    upper_tail,
)

_MAD_TO_SD = 1.4826
_WINSOR = 2.5
# E[min(Z², c²)] for a standard normal Z: winsorizing at c shrinks the variance by this.
_WINSOR_VARIANCE = float(
    1.0
    - 2.0 * stats.norm.sf(_WINSOR)
    - 2.0 * _WINSOR * stats.norm.pdf(_WINSOR)
    + 2.0 * _WINSOR**2 * stats.norm.sf(_WINSOR)
)
# Fewer series than this say too little about a family's scatter to act as a prior.
MIN_PRIOR_SERIES = 3
# Degrees of freedom standing for "every series in the family shares one scale".
_MAX_PRIOR_DF = 200.0
# Asymptotic efficiency of the MAD against the SD for normal data: what a scale read
# off a cross-section's median absolute deviation is worth in degrees of freedom.
_MAD_EFFICIENCY = 0.37
# Typical size of a change (log units) when a history shows too few to measure it,
# and the change points needed before their sizes set it.
DEFAULT_CHANGE_SCALE = 0.1
_MIN_CHANGES_FOR_SCALE = 3
_UNDERCOUNT = 2.0
# The share of changes drawn from the wide law, and its scale (log units).
_WIDE_SHARE = 0.1
_WIDE_SCALE = 1.0
# Pooled residuals needed before a t law is fitted to them, and before their own
# smoothed shape is used as the law.
MIN_POOL_FOR_LAW = 20
MIN_POOL_FOR_SHAPE = 200
# Grid half-width (noise units) for laws of differences: at least this, and room for
# twice the farthest pooled residual.
_MIN_REACH = 60.0
_REACH_MARGIN = 20.0


@dataclass(frozen=True)
class NoiseProfile:
    """What one series' settled history says: its between-commit scatter of log levels,
    and how often and how far its level changed.

    ``residuals`` are log levels minus their segment's median, signed so that positive
    is worse, each inflated for the median's own share (``sqrt(k/(k-1))`` in a segment
    of ``k``); ``df`` counts residual degrees of freedom (0: no estimate). ``changes``
    of ``transitions`` commit-to-commit steps moved the level, by ``change_sizes``
    (log ratios).
    """

    scale: float
    df: float
    residuals: np.ndarray
    changes: int = 0
    transitions: int = 0
    change_sizes: np.ndarray = field(default_factory=lambda: np.empty(0))


@dataclass(frozen=True)
class ChangeLaw:
    """How often a commit changes a family's level (``rate``) and by how much.

    Sizes of the log ratio follow a Cauchy law of ``scale`` (the family's typical
    change), mixed with a share ``_WIDE_SHARE`` of one whose scale is a factor e:
    changes run from a few percent to orders of magnitude (a code path replaced), and
    a history of small ones must not make a 50x jump look like noise."""

    rate: float
    scale: float = DEFAULT_CHANGE_SCALE

    def density(self, delta: np.ndarray) -> np.ndarray:
        return (1.0 - _WIDE_SHARE) * _cauchy(delta, self.scale) + _WIDE_SHARE * _cauchy(
            delta, _WIDE_SCALE
        )

    def share_within(self, margin: float) -> float:
        """P(|δ| < margin) for a change drawn from this law."""

        def within(scale: float) -> float:
            return 2.0 / math.pi * math.atan(margin / scale)

        return (1.0 - _WIDE_SHARE) * within(self.scale) + _WIDE_SHARE * within(_WIDE_SCALE)


def _cauchy(delta: np.ndarray, scale: float) -> np.ndarray:
    return 1.0 / (math.pi * scale * (1.0 + np.square(delta / scale)))


# Nothing known about how often commits change things: even odds.
UNKNOWN_CHANGES = ChangeLaw(rate=0.5)


def change_law(profiles: Sequence[NoiseProfile]) -> ChangeLaw:
    """The change law read off histories: (changes + 1)/(transitions + 2) per commit,
    sized by the median change found, when there are a few to go by."""
    changes = sum(p.changes for p in profiles)
    transitions = sum(p.transitions for p in profiles)
    sizes = np.concatenate([p.change_sizes for p in profiles]) if profiles else np.empty(0)
    scale = DEFAULT_CHANGE_SCALE
    if sizes.size >= _MIN_CHANGES_FOR_SCALE:
        scale = min(max(float(np.median(np.abs(sizes))), 1e-3), DEFAULT_CHANGE_SCALE)
    rate = min(_UNDERCOUNT * (changes + 1.0) / (transitions + 2.0), 0.5)
    return ChangeLaw(rate=rate, scale=scale)


@dataclass(frozen=True)
class NoisePrior:
    """A family's scatter: a scale worth ``df`` degrees of freedom, its tail and its
    change law.

    ``tail`` holds the family's standardized residuals (worse positive), sorted: how
    often chance alone went how far, each way (see :mod:`loadkit.history.stats.laws`).
    """

    scale: float
    df: float
    tail: np.ndarray
    series: int
    change: ChangeLaw = UNKNOWN_CHANGES
    # Laws of newest-minus-reference differences already built, by (df, references).
    differences: dict[tuple[float, int], GridLaw] = field(
        default_factory=dict, compare=False, repr=False
    )

    @cached_property
    def _upper(self) -> Exceedances | None:
        return fit_exceedances(self.tail)

    @cached_property
    def _lower(self) -> Exceedances | None:
        return fit_exceedances(-self.tail[::-1])

    @cached_property
    def law(self) -> NoiseLaw | None:
        """The pooled residuals' law: their own shape when there are many of them, a
        two-piece t law fitted to them when there are a few, none when fewer."""
        if self.tail.size >= MIN_POOL_FOR_SHAPE:
            return EmpiricalLaw(self.tail)
        if self.tail.size >= MIN_POOL_FOR_LAW:
            return fitted_two_piece(self.tail)
        return None

    def upper_tail(self, t: float) -> float:
        """P(z ≥ t) on the worse side (0 when nothing is pooled)."""
        return upper_tail(self.tail, self._upper, t)

    def lower_tail(self, t: float) -> float:
        """P(z ≤ t) on the better side (0 when nothing is pooled)."""
        return upper_tail(-self.tail[::-1], self._lower, -t)

    @property
    def reach(self) -> float:
        """How far (noise units) a difference of two of these residuals can go."""
        extreme = float(np.max(np.abs(self.tail))) if self.tail.size else 0.0
        return max(_MIN_REACH, 2.0 * extreme + _REACH_MARGIN)


def robust_scale(residuals: np.ndarray, df: float) -> float:
    """SD of residuals (centred already) winsorized at 2.5 robust SDs, on the normal scale.

    Nearly as efficient as the SD on normal noise, yet one outlier moves it by at most
    2.5 robust SDs' worth. When over half the residuals are equal (quantized timers)
    the MAD is 0 and the mean absolute deviation sets the clip instead.
    """
    if residuals.size == 0 or df <= 0:
        return 0.0
    absolute = np.abs(residuals)
    spread = _MAD_TO_SD * float(np.median(absolute))
    if spread <= 0.0:
        spread = math.sqrt(math.pi / 2.0) * float(np.mean(absolute))
    if spread <= 0.0:
        return 0.0
    clipped = np.clip(residuals, -_WINSOR * spread, _WINSOR * spread)
    return math.sqrt(float(np.sum(clipped**2)) / df / _WINSOR_VARIANCE)


def series_profile(
    log_levels: np.ndarray,
    boundaries: Sequence[int],
    sign: int,
    change_sizes: Sequence[float] = (),
) -> NoiseProfile:
    """Scatter of ``log_levels`` around each segment's median (segments start at
    ``boundaries``, the level changing there by ``change_sizes``); ``sign`` is +1 when
    larger values are worse."""
    edges = [0, *boundaries, log_levels.size]
    parts = []
    df = 0
    for start, stop in itertools.pairwise(edges):
        segment = log_levels[start:stop]
        if segment.size < 2:
            continue
        inflation = math.sqrt(segment.size / (segment.size - 1.0))
        parts.append((segment - np.median(segment)) * inflation)
        df += segment.size - 1
    changes = {
        "changes": len(boundaries),
        "transitions": max(log_levels.size - 1, 0),
        "change_sizes": np.asarray(change_sizes, dtype=float),
    }
    if not parts:
        return NoiseProfile(scale=0.0, df=0.0, residuals=np.empty(0), **changes)
    residuals = sign * np.concatenate(parts)
    scale = robust_scale(residuals, df)
    return NoiseProfile(scale=scale, df=float(df), residuals=residuals, **changes)


def _trigamma_inverse(value: float) -> float:
    """x with trigamma(x) = value, by Newton's method on 1/trigamma (as limma does)."""
    if value > 1e7:
        return 1.0 / math.sqrt(value)
    if value < 1e-6:
        return 1.0 / value
    x = 0.5 + 1.0 / value
    for _ in range(50):
        tri = float(special.polygamma(1, x))
        step = tri * (1.0 - tri / value) / float(special.polygamma(2, x))
        x += step
        if abs(step) < 1e-8 * x:
            break
    return x


def _winsorized(values: np.ndarray, share: float = 0.05) -> np.ndarray:
    if values.size < 10:
        return values
    low, high = np.quantile(values, [share, 1.0 - share])
    return np.clip(values, low, high)


def fit_prior(profiles: Sequence[NoiseProfile]) -> NoisePrior | None:
    """The family's prior scale and its weight from the series' own scales.

    Each ``s²`` is ``σ²·χ²_d/d`` and ``1/σ²`` is ``χ²_ν/(ν·s0²)`` across series, so
    ``log s²`` has known mean and variance given ``(s0, ν)``; matching them (winsorized,
    so a few odd series do not decide) gives the prior. Series that share one scale
    give a large ``ν``; a family of very different benchmarks gives a small one, and
    then the prior counts for little.
    """
    usable = [p for p in profiles if p.df > 0 and p.scale > 0]
    if len(usable) < MIN_PRIOR_SERIES:
        return None
    half_df = np.array([p.df / 2.0 for p in usable])
    logs = np.log(np.array([p.scale**2 for p in usable]))
    centred = logs - special.digamma(half_df) + np.log(half_df)
    centred = _winsorized(centred)
    mean = float(np.mean(centred))
    excess = float(np.var(centred, ddof=1)) - float(np.mean(special.polygamma(1, half_df)))
    df = min(2.0 * _trigamma_inverse(excess), _MAX_PRIOR_DF) if excess > 0 else _MAX_PRIOR_DF
    scale = math.sqrt(math.exp(mean + special.digamma(df / 2.0) - math.log(df / 2.0)))
    prior = NoisePrior(scale=scale, df=df, tail=np.empty(0), series=len(usable))
    pooled = np.sort(np.concatenate([p.residuals / moderated_scale(p, prior)[0] for p in usable]))
    return NoisePrior(
        scale=scale, df=df, tail=pooled, series=len(usable), change=change_law(profiles)
    )


def cross_section_prior(deviations: np.ndarray, reference_factor: float) -> NoisePrior | None:
    """A prior from one commit's deviations across a family, when no history has any.

    With a single reference commit everywhere there is no residual to learn from, but
    the siblings' own jumps at this commit are draws of the same noise (plus whatever
    really changed in a few of them). Their median absolute size, taken around zero so a
    shift of the whole machine counts as noise, is robust to the few that changed.
    ``reference_factor`` is ``1 + c/m``, how much a deviation's variance exceeds one
    commit's. No tail is pooled: the deviations include the changes being judged; and
    with no history, how often commits change things is unknown (even odds).
    """
    finite = deviations[np.isfinite(deviations)]
    if finite.size < 2 * MIN_PRIOR_SERIES:
        return None
    scale = _MAD_TO_SD * float(np.median(np.abs(finite))) / math.sqrt(reference_factor)
    if scale <= 0.0:
        return None
    df = max(_MAD_EFFICIENCY * (finite.size - 1), 1.0)
    return NoisePrior(scale=scale, df=df, tail=np.empty(0), series=int(finite.size))


def moderated_scale(profile: NoiseProfile | None, prior: NoisePrior | None) -> tuple[float, float]:
    """Posterior scale and degrees of freedom: own evidence and prior, weighted by df.

    A history that never moved (scale 0 on some degrees of freedom) is evidence too:
    alone, it makes any move real."""
    own_df = profile.df if profile is not None else 0.0
    own = profile.scale if profile is not None else 0.0
    if prior is None:
        return own, own_df
    df = prior.df + own_df
    variance = (prior.df * prior.scale**2 + own_df * own**2) / df
    return math.sqrt(variance), df
