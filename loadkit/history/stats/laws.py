"""Noise laws in noise units: Student's t, and the law of a family's pooled residuals.

A family's pooled standardized residuals (worse positive, sorted) say how often chance
alone took a commit how far from its level, per direction: two runner speeds, one-off
blips. Inside the range seen, their share speaks. Beyond it, nothing was seen, so the
tail is extended by an exponential law fitted to the top (bottom) fifth — peaks over a
threshold — with the decay length bounded above by how little a few points can say
about it. Twenty residuals then do not pretend to know the far tail, and twenty
thousand are taken nearly at their word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
from scipy import signal, special, stats

# The top share of pooled residuals an exponential tail is fitted to, the fewest
# residuals that fit may rest on, and the most: a big pool's far tail is its own, not
# the shape of its bulk (two runner levels make a bump, not a long tail).
_TAIL_SHARE = 0.2
_MIN_EXCEEDANCES = 5
_MAX_EXCEEDANCES = 30
# One-sided level of the upper bound on the tail's decay length.
_TAIL_BOUND = 0.2
# Decay length (noise units) assumed when too few residuals are pooled to fit one, and
# the weight, in excesses, of a normal tail that a fitted decay is shrunk towards.
_UNKNOWN_DECAY = 2.0
_NORMAL_PSEUDO_EXCEEDANCES = 10.0
# The degrees of freedom a small pool's t law is chosen from, and the fixed-point
# iterations of its scale.
_MAX_FITTED_DF = 200.0
# No lighter than 2 df: with a Cauchy side, no jump could ever outgrow the noise.
_FITTED_DFS = np.array([2.0, 3.0, 4.0, 6.0, 9.0, 14.0, 20.0, 30.0, 60.0, _MAX_FITTED_DF])
_SCALE_ITERATIONS = 25
_HEAVY_TAIL_LEVEL = 0.2
# Draws of an uncertain scale averaged over (quantiles of its law).
_SCALE_DRAWS = 16
# Grid step (noise units) of the law of a newest-minus-reference difference.
_DIFFERENCE_STEP = 0.02
# Grid of the smoothed body, in noise units.
_MAX_GRID_POINTS = 4000
_MIN_STEP = 0.05


@dataclass(frozen=True)
class Exceedances:
    """An exponential tail beyond ``threshold``: ``share`` of the mass, ``decay`` long."""

    threshold: float
    share: float
    decay: float

    def survival(self, t: float) -> float:
        return self.share * math.exp(-(t - self.threshold) / self.decay)


def fit_exceedances(ordered: np.ndarray, bounded: bool = True) -> Exceedances | None:
    """The top of sorted ``ordered`` as an exponential tail, if enough to fit.

    The mean of k exponential excesses is Gamma(k, β/k) distributed; when ``bounded``
    the decay used is its upper ``_TAIL_BOUND`` bound, so a tail read off few points is
    a heavy one (for p-values, which must not be small by luck).
    """
    n = ordered.size
    k = min(int(n * _TAIL_SHARE), _MAX_EXCEEDANCES)
    if k < _MIN_EXCEEDANCES:
        return None
    threshold = float(ordered[n - k - 1])
    excess = float(np.mean(ordered[n - k :] - threshold))
    if excess <= 0.0:
        return None
    bound = 2.0 * k / float(stats.chi2.ppf(_TAIL_BOUND, 2 * k)) if bounded else 1.0
    return Exceedances(threshold=threshold, share=k / (n + 1.0), decay=excess * bound)


def tail_decay(ordered: np.ndarray) -> float:
    """Decay length of the upper tail of sorted ``ordered`` beyond its largest value.

    The fitted decay is shrunk towards a normal tail's mean excess at the same
    threshold, as if ``_NORMAL_PSEUDO_EXCEEDANCES`` normal excesses had been seen too:
    a handful of points then neither invent a long tail nor hide one that is plain
    (a skewed pool's excesses outweigh the pseudo ones). A big pool speaks for itself.
    """
    fitted = fit_exceedances(ordered, bounded=False)
    if fitted is None:
        return _UNKNOWN_DECAY
    k = fitted.share * (ordered.size + 1.0)
    u = fitted.threshold
    normal = float(stats.norm.pdf(u) / stats.norm.sf(u) - u)
    pseudo = _NORMAL_PSEUDO_EXCEEDANCES
    return (k * fitted.decay + pseudo * normal) / (k + pseudo)


def upper_tail(ordered: np.ndarray, fitted: Exceedances | None, t: float) -> float:
    """P(z ≥ t): the share seen at or beyond ``t`` (out of N + 1), or the fitted tail
    where that is heavier."""
    n = ordered.size
    if n == 0:
        return 0.0
    share = (n - int(np.searchsorted(ordered, t, side="left"))) / (n + 1.0)
    if fitted is None or t <= fitted.threshold:
        return share
    return max(share, fitted.survival(t))


class NoiseLaw(Protocol):
    """A standardized noise distribution (worse positive): density and CDF."""

    def pdf(self, z: np.ndarray) -> np.ndarray: ...

    def cdf(self, z: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class StudentLaw:
    """Student's t with ``df`` degrees of freedom, stretched by ``scale``.

    Written out with ufuncs: the gate evaluates it thousands of times per check, where
    ``scipy.stats``' argument checking would cost more than the arithmetic."""

    df: float
    scale: float = 1.0

    @cached_property
    def _log_norm(self) -> float:
        nu = self.df
        return float(
            special.gammaln((nu + 1.0) / 2.0)
            - special.gammaln(nu / 2.0)
            - 0.5 * math.log(nu * math.pi)
            - math.log(self.scale)
        )

    def pdf(self, z: np.ndarray) -> np.ndarray:
        nu = self.df
        u = np.asarray(z, dtype=float) / self.scale
        return np.exp(self._log_norm - 0.5 * (nu + 1.0) * np.log1p(np.square(u) / nu))

    def cdf(self, z: np.ndarray) -> np.ndarray:
        return special.stdtr(self.df, np.asarray(z, dtype=float) / self.scale)


def _fitted_half(magnitudes: np.ndarray) -> StudentLaw:
    """The t law whose folded half best explains ``magnitudes`` (sizes on one side).

    Profile likelihood over a grid of df, each with its scale's fixed point (the EM
    update of a t law's scale). Heavy tails are admitted only when they explain the
    side significantly better than a normal law does (likelihood ratio at
    ``_HEAVY_TAIL_LEVEL``): by chance alone a few points often look heavy.
    """
    squares = np.square(magnitudes)
    normal_scale = float(np.sqrt(np.mean(squares))) if squares.size else 0.0
    if normal_scale <= 0.0:
        return StudentLaw(df=_MAX_FITTED_DF, scale=1.0)
    dfs = _FITTED_DFS[:, None]
    scale2 = np.full((_FITTED_DFS.size, 1), normal_scale**2)
    for _ in range(_SCALE_ITERATIONS):
        weights = (dfs + 1.0) / (dfs + squares[None, :] / scale2)
        scale2 = np.mean(weights * squares[None, :], axis=1, keepdims=True)
    logliks = np.sum(
        special.gammaln((dfs + 1.0) / 2.0)
        - special.gammaln(dfs / 2.0)
        - 0.5 * np.log(dfs * math.pi * scale2)
        - 0.5 * (dfs + 1.0) * np.log1p(squares[None, :] / (dfs * scale2)),
        axis=1,
    )
    best = int(np.argmax(logliks))
    light = float(np.sum(stats.norm.logpdf(magnitudes, scale=normal_scale)))
    if 2.0 * (float(logliks[best]) - light) < float(stats.chi2.isf(_HEAVY_TAIL_LEVEL, 1)):
        return StudentLaw(df=_MAX_FITTED_DF, scale=normal_scale)
    return StudentLaw(df=float(_FITTED_DFS[best]), scale=float(math.sqrt(scale2[best, 0])))


@dataclass(frozen=True)
class TwoPieceLaw:
    """A t law per side of zero, each holding its side's share of the mass.

    Twenty or a hundred residuals cannot draw a law's shape, but they can tell a
    normal-looking side from one whose far values betray a heavy tail — and benchmark
    noise is skewed (a run is slowed far more easily than sped up), so each side gets
    its own."""

    upper: StudentLaw
    lower: StudentLaw
    upper_share: float

    def pdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        up = 2.0 * self.upper_share * self.upper.pdf(z)
        down = 2.0 * (1.0 - self.upper_share) * self.lower.pdf(z)
        return np.where(z >= 0.0, up, down)

    def cdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        below = 1.0 - self.upper_share
        up = below + 2.0 * self.upper_share * (self.upper.cdf(z) - 0.5)
        down = 2.0 * below * self.lower.cdf(z)
        return np.where(z >= 0.0, up, down)


def fitted_two_piece(ordered: np.ndarray) -> TwoPieceLaw:
    """The two-piece t law of a small pool of residuals (centred at 0)."""
    above = ordered[ordered > 0.0]
    below = -ordered[ordered < 0.0]
    ties = ordered.size - above.size - below.size
    share = (above.size + 0.5 * ties + 1.0) / (ordered.size + 2.0)
    return TwoPieceLaw(upper=_fitted_half(above), lower=_fitted_half(below), upper_share=share)


@dataclass(frozen=True)
class EmpiricalLaw:
    """The law of pooled residuals: their smoothed shape, and tails beyond them.

    Inside the range seen, a kernel-smoothed histogram keeps the law's real shape (two
    runner levels make two bumps). A new residual lands beyond the largest with
    probability 1/(N + 1), and decays there as the top of the pool does (see
    :func:`fit_exceedances`); the same below the smallest.
    """

    ordered: np.ndarray
    _grid: np.ndarray = field(init=False, repr=False)
    _density: np.ndarray = field(init=False, repr=False)
    _cumulative: np.ndarray = field(init=False, repr=False)
    _upper: tuple[float, float, float] = field(init=False, repr=False)
    _lower: tuple[float, float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values = self.ordered
        n = values.size
        low, high = float(values[0]), float(values[-1])
        bandwidth = max(0.2, 1.06 * n ** (-0.2))
        step = max(_MIN_STEP, (high - low + 8.0 * bandwidth) / _MAX_GRID_POINTS)
        edges = np.arange(low - 4.0 * bandwidth, high + 4.0 * bandwidth + step, step)
        counts, _ = np.histogram(values, bins=edges)
        grid = 0.5 * (edges[:-1] + edges[1:])
        offsets = np.arange(-4.0 * bandwidth, 4.0 * bandwidth + step / 2.0, step)
        density = np.convolve(counts.astype(float), stats.norm.pdf(offsets / bandwidth), "same")
        density[(grid < low) | (grid > high)] = 0.0
        beyond = 1.0 / (n + 1.0)
        density *= (1.0 - 2.0 * beyond) / (float(np.sum(density)) * step)
        set_field = object.__setattr__  # frozen: derived fields are set once, here
        set_field(self, "_grid", grid)
        set_field(self, "_density", density)
        set_field(self, "_cumulative", beyond + np.cumsum(density) * step)
        set_field(self, "_upper", (high, beyond, tail_decay(values)))
        set_field(self, "_lower", (-low, beyond, tail_decay(-values[::-1])))

    def pdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        inside = np.interp(z, self._grid, self._density, left=0.0, right=0.0)
        edge, mass, decay = self._upper
        above = np.where(z > edge, mass / decay * np.exp(-np.maximum(z - edge, 0.0) / decay), 0.0)
        edge, mass, decay = self._lower
        below = np.where(-z > edge, mass / decay * np.exp(-np.maximum(-z - edge, 0.0) / decay), 0.0)
        return inside + above + below

    def cdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        lower_edge, lower_mass, lower_decay = self._lower
        upper_edge, upper_mass, upper_decay = self._upper
        body = np.interp(z, self._grid, self._cumulative)
        below = lower_mass * np.exp(-np.maximum(-z - lower_edge, 0.0) / lower_decay)
        above = 1.0 - upper_mass * np.exp(-np.maximum(z - upper_edge, 0.0) / upper_decay)
        return np.where(z < -lower_edge, below, np.where(z > upper_edge, above, body))


@dataclass(frozen=True)
class GridLaw:
    """A law given by its density on an evenly spaced grid (zero beyond it)."""

    grid: np.ndarray
    density: np.ndarray
    _cumulative: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        step = float(self.grid[1] - self.grid[0])
        object.__setattr__(self, "_cumulative", np.cumsum(self.density) * step)

    def pdf(self, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.grid, self.density, left=0.0, right=0.0)

    def cdf(self, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.grid, self._cumulative, left=0.0, right=1.0)

    def quantile(self, q: float) -> float:
        return float(np.interp(q, self._cumulative, self.grid))


def reference_difference(base: NoiseLaw, references: int, reach: float) -> GridLaw:
    """The law of ``z_new − median(z_1 … z_m)`` for independent draws from ``base``.

    The newest commit is compared with the median of ``m`` reference commits, each as
    noisy as it. With one or two of them the reference is as likely to be the odd one
    out as the newest is (a commit that landed on a slow runner, a blip), which a
    variance inflation of a symmetric law cannot express. The median's law is the
    middle order statistic's (for an even count, the mean of two for ``m = 2``, else
    the order statistic of ``m − 1``); the difference is a convolution. ``reach`` bounds
    the grid in noise units.
    """
    half = math.ceil(reach / _DIFFERENCE_STEP)
    z = np.arange(-half, half + 1) * _DIFFERENCE_STEP
    f = np.asarray(base.pdf(z), dtype=float)
    step = _DIFFERENCE_STEP
    if references == 1:
        median = f
    elif references == 2:
        pair = signal.fftconvolve(f, f, mode="same") * step  # density of z1 + z2 at z
        median = 2.0 * np.interp(2.0 * z, z, pair, left=0.0, right=0.0)
    else:
        odd = references if references % 2 else references - 1
        k = odd // 2
        cumulative = np.clip(np.asarray(base.cdf(z), dtype=float), 0.0, 1.0)
        log_coefficient = special.gammaln(odd + 1.0) - 2.0 * special.gammaln(k + 1.0)
        median = np.exp(log_coefficient) * (cumulative * (1.0 - cumulative)) ** k * f
    median /= max(float(np.sum(median)) * step, 1e-300)
    difference = signal.fftconvolve(f, median[::-1], mode="same") * step
    difference = np.maximum(difference, 0.0)  # the FFT leaves rounding dust below zero
    difference /= max(float(np.sum(difference)) * step, 1e-300)
    return GridLaw(grid=z, density=difference)


@dataclass(frozen=True)
class ScaleMixedLaw:
    """A law stretched by an uncertain scale: ``z·s`` with ``s²`` drawn as ``df/χ²_df``.

    A family's pooled residuals are each in their own series' noise units; a series
    whose scale rests on few degrees of freedom may be noisier or quieter than its
    estimate says, which widens its law just as Student's t widens the normal."""

    base: NoiseLaw
    df: float

    @cached_property
    def _scales(self) -> np.ndarray:
        levels = (np.arange(_SCALE_DRAWS) + 0.5) / _SCALE_DRAWS
        return np.sqrt(self.df / stats.chi2.ppf(levels, self.df))

    def pdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        return np.mean([self.base.pdf(z / s) / s for s in self._scales], axis=0)

    def cdf(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        return np.mean([self.base.cdf(z / s) for s in self._scales], axis=0)
