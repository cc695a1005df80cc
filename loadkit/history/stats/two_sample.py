"""Two commits measured in turn on one machine: is the second worse, per benchmark?

``loadkit compare`` runs a base and a head commit in alternating rounds; each round
gives every benchmark one value per side (the median of that round's samples). With a
handful of rounds a benchmark's own scatter is known only roughly, yet benchmarks of one
family (one module, else the whole suite) share the machine, the build and the timer, so
their scatters are alike. As ``check`` does, each benchmark's between-round scale is
shrunk towards its family's (limma's moderated variance, :mod:`loadkit.history.noise`),
and the degrees of freedom the family adds make the interval honest at two rounds.

The runs of a benchmark are paired: in every round its base and head run next to each
other (one workload's block after the other's, :mod:`loadkit.history.stats.round_plan`).
A slow spell of the host lasts from milliseconds to minutes; one that covers a block
slows both of its runs alike, so it cancels in that round's log(head / base), while it
would have widened both sides' scatter had they been judged apart. With two or more
such pairs the change is the median of the rounds' own log ratios, and its noise their
scatter; a benchmark measured in too few common rounds is judged from the two sides'
medians and their scatter about them, as unpaired samples. Medians, because one wild
round (a neighbour's burst on a shared machine) must not decide. The standard error is
the moderated scale times the exact sampling spread of a median of ``n`` normal draws
(:func:`median_variance_factor`), and Student's t at the moderated degrees of freedom
gives one-sided p-values in the benchmark's declared direction. False alarms are
controlled across all benchmarks at once with Benjamini–Hochberg (the one in
:mod:`loadkit.history.scoring`): with every benchmark unchanged, the chance that any is
called a regression is at most the false-discovery rate. As in ``check``, a regression
must also be at least ``min_effect`` large, so a real but tiny change does not fail a
pull request.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.noise import (
    NoisePrior,
    NoiseProfile,
    fit_prior,
    moderated_scale,
)
from loadkit.history.stats.scoring import benjamini_hochberg
from loadkit.history.stats.student import t_cdf, t_isf, t_sf
from loadkit.runs.direction import Direction

# Benchmarks a family needs before its own prior is fitted: the prior's weight is a
# moment estimate from the members' scales, and from a few it can be far too large
# (three benchmarks at 28 %, 20 % and 7 % once looked like one scale), which pulls the
# noisiest towards the quiet ones and calls their noise a change.
MIN_FAMILY = 8
# Power the detectable effect is quoted at (as the gate's).
POWER = 0.8
# A benchmark whose noise hides even a tenfold change at these rounds can be called neither
# worse nor better, yet each one in the false-discovery step lowers every other
# benchmark's threshold. Such benchmarks are left out of that step (independent
# filtering: the noise scale is computed from each side's scatter about its own level,
# which under no change says nothing of the change itself, so the step's bound holds
# for the rest). They are reported INCONCLUSIVE with their detectable effect.
FILTER_EFFECT = 10.0
# How many members' degrees of freedom a family's prior may count for (see _fitted).
PRIOR_MEMBERS = 2
# Common rounds a benchmark needs before it is judged by its rounds' own ratios.
MIN_PAIRS = 2
# Grid for the exact variance of a sample median of normal draws.
_GRID = np.linspace(-9.0, 9.0, 6001)
# The fewest degrees of freedom a t law is given when nothing is known of the scale.
_MIN_DF = 1.0
_TINY_SCALE = 1e-9


@dataclass(frozen=True)
class Paired:
    """One benchmark's values from both commits, one value per round and side.

    ``family`` groups benchmarks whose noise is alike (their module); values are in the
    benchmark's raw unit, positive and finite. ``pairs`` holds (base, head) from the
    rounds both sides measured, each side's run next to the other's. ``known`` is the
    run-to-run log scale an A/A study measured for it and its degrees of freedom
    (:mod:`loadkit.asvsuite.known_noise`), the prior its scatter is moderated with
    instead of its family's."""

    name: str
    base: tuple[float, ...]
    head: tuple[float, ...]
    direction: Direction
    family: str = ""
    pairs: tuple[tuple[float, float], ...] = ()
    known: tuple[float, float] | None = None

    def log_ratios(self) -> np.ndarray | None:
        """Each common round's log(head / base); None when too few to judge by."""
        if len(self.pairs) < MIN_PAIRS:
            return None
        return np.array([math.log(head / base) for base, head in self.pairs])

    @property
    def sizes(self) -> tuple[int, int]:
        """Values per side the statistic uses: the pairs, or each side's rounds."""
        if len(self.pairs) >= MIN_PAIRS:
            return len(self.pairs), len(self.pairs)
        return len(self.base), len(self.head)


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome for one benchmark; ratios are head over base in raw units.

    ``confidence`` is 1 minus the one-sided p-value of the verdict's claim (for
    NO_CHANGE, of the equivalence test within ``min_effect``; for INCONCLUSIVE, of the
    best claim, which fell short). ``detectable_effect`` is the worsening (0.1 = 10 %)
    this comparison finds with 80 % power; ``noise_scale``/``noise_df`` the moderated
    between-round scatter of log values used.
    """

    name: str
    verdict: Verdict
    ratio: float
    ratio_low: float
    ratio_high: float
    confidence: float
    p_worse: float
    p_better: float
    detectable_effect: float
    noise_scale: float
    noise_df: float
    base_median: float
    head_median: float
    base_rounds: int
    head_rounds: int
    direction: Direction
    paired_rounds: int = 0

    @property
    def worse_change(self) -> float:
        """Relative change, positive when worse in the declared direction."""
        return math.expm1(self.direction.sign * math.log(self.ratio))


@functools.lru_cache(maxsize=128)
def median_variance_factor(n: int) -> float:
    """Variance of the median of ``n`` standard normal draws (exact, numerically).

    The usual ``pi / 2n`` holds only for large ``n``: at 2 the median is the mean
    (1/2), at 3 it is 0.449. Odd ``n`` integrate the middle order statistic's density;
    even ``n`` the mean of the two middle ones, whose joint density is integrated as a
    running inner integral along one grid.
    """
    if n < 1:
        raise ValueError("a median needs at least one value")
    if n == 1:
        return 1.0
    x = _GRID
    cdf, sf, pdf = special.ndtr(x), special.ndtr(-x), np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    if n % 2:
        k = n // 2
        log_c = special.gammaln(n + 1) - 2.0 * special.gammaln(k + 1)
        density = np.exp(log_c + k * np.log(cdf + 1e-300) + k * np.log(sf + 1e-300)) * pdf
        return float(np.trapezoid(x * x * density, x))
    k = n // 2
    # X_(k), X_(k+1) of n = 2k: C * cdf(a)^(k-1) * sf(b)^(k-1) * pdf(a) * pdf(b), a < b.
    log_c = special.gammaln(n + 1) - 2.0 * special.gammaln(k)
    lower = np.exp((k - 1) * np.log(cdf + 1e-300)) * pdf
    upper = np.exp(log_c + (k - 1) * np.log(sf + 1e-300)) * pdf
    step = x[1] - x[0]
    below_x = np.concatenate([[0.0], np.cumsum(0.5 * (x[1:] * lower[1:] + x[:-1] * lower[:-1]))])
    below_1 = np.concatenate([[0.0], np.cumsum(0.5 * (lower[1:] + lower[:-1]))])
    below_x2 = np.concatenate(
        [[0.0], np.cumsum(0.5 * (x[1:] ** 2 * lower[1:] + x[:-1] ** 2 * lower[:-1]))]
    )
    # E[(a + b)^2] = E[a^2] + 2 E[ab] + E[b^2], each the outer integral over b.
    inner = (below_x2 + 2.0 * x * below_x + x * x * below_1) * step
    return float(np.trapezoid(upper * inner, x)) / 4.0


def standard_error(scale: float, base_rounds: int, head_rounds: int) -> float:
    """Standard error of the difference of the two sides' median log values."""
    return scale * math.sqrt(
        median_variance_factor(base_rounds) + median_variance_factor(head_rounds)
    )


def _profile(item: Paired) -> NoiseProfile:
    """The benchmark's own between-round scatter, as one run's log scale.

    Paired, the scatter of the rounds' log ratios about their mean, over the square root
    of two (a ratio holds two runs' noise), so paired and unpaired benchmarks share one
    scale for the family prior. Unpaired, the pooled variance of log values about each
    side's mean. With a handful of rounds a robust scale (about medians, winsorized) is
    biased low and its degrees of freedom overstated; the classical estimate is exactly
    ``sigma^2 chi^2_d / d`` under normal noise, which is what the family prior's moment
    matching assumes."""
    ratios = item.log_ratios()
    if ratios is not None:
        pooled = item.direction.sign * (ratios - ratios.mean()) / math.sqrt(2.0)
        df = float(ratios.size - 1)
        return NoiseProfile(scale=math.sqrt(float(np.sum(pooled**2)) / df), df=df, residuals=pooled)
    sides = [np.log(np.asarray(side, dtype=float)) for side in (item.base, item.head)]
    residuals = [side - side.mean() for side in sides if side.size >= 2]
    df = float(sum(r.size - 1 for r in residuals))
    if df <= 0:
        return NoiseProfile(scale=0.0, df=0.0, residuals=np.empty(0))
    pooled = item.direction.sign * np.concatenate(residuals)
    return NoiseProfile(scale=math.sqrt(float(np.sum(pooled**2)) / df), df=df, residuals=pooled)


def _fitted(profiles: Sequence[NoiseProfile]) -> NoisePrior | None:
    """The prior of these profiles, worth no more than two members' own scatters.

    With a handful of rounds each benchmark's scatter is known to two or four degrees of
    freedom, and a moment match over eight such scatters often finds them no more varied
    than chance alone would make them, and then calls the family one scale known to
    hundreds of degrees of freedom. A module's benchmarks are not that alike (a WASM
    speedup is steadier than a WASM parse time): a loud one, judged by its quiet
    siblings' scale, is then called changed by its own noise. Of 1000 simulated A/A
    suites at three paired rounds, 1.6 % failed with the prior uncapped, 0.3 % capped at
    four members' degrees of freedom and none capped at two, which still finds a 15 %
    change in a steady family 95 % of the time (96 % at four)."""
    prior = fit_prior(profiles)
    if prior is None:
        return None
    member = float(np.mean([p.df for p in profiles if p.df > 0 and p.scale > 0]))
    return dataclasses.replace(prior, df=min(prior.df, PRIOR_MEMBERS * member))


def family_priors(items: Sequence[Paired]) -> list[NoisePrior | None]:
    """Each benchmark's prior: the A/A study's when one measured it, else its family's
    when the family has enough benchmarks with scatter, else the whole comparison's."""
    profiles = [_profile(item) for item in items]
    everyone = _fitted(profiles)
    members: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        members[item.family].append(index)
    priors: list[NoisePrior | None] = [everyone] * len(items)
    for indices in members.values():
        if len(indices) < MIN_FAMILY:
            continue
        prior = _fitted([profiles[i] for i in indices])
        if prior is not None:
            for i in indices:
                priors[i] = prior
    for index, item in enumerate(items):
        if item.known is not None and item.known[0] > 0 and item.known[1] > 0:
            scale, df = item.known
            priors[index] = NoisePrior(scale=scale, df=df, tail=np.empty(0), series=1)
    return priors


def moderated_noise(items: Sequence[Paired]) -> list[tuple[float, float]]:
    """(scale, degrees of freedom) of every benchmark's between-round log scatter."""
    priors = family_priors(items)
    return [
        moderated_scale(_profile(item), prior) for item, prior in zip(items, priors, strict=True)
    ]


def detectable_effect(
    scale: float,
    df: float,
    base_rounds: int,
    head_rounds: int,
    tests: int,
    false_discovery: float,
    min_effect: float = 0.0,
) -> float:
    """The worsening (0.1 = 10 %) found with 80 % power among ``tests`` benchmarks.

    A single real change among many nulls is rejected by Benjamini–Hochberg at about
    ``rate / hypotheses`` (two one-sided tests a benchmark), so that is the level; the
    effect must also reach ``min_effect``."""
    if df <= 0 or not math.isfinite(scale):
        return math.inf
    error = standard_error(max(scale, _TINY_SCALE), base_rounds, head_rounds)
    level = false_discovery / max(2 * tests, 1)
    reach = (t_isf(level, df) + t_isf(1.0 - POWER, df)) * error
    return max(math.expm1(reach), min_effect)


@dataclass(frozen=True)
class _Draft:
    shift: float
    p_worse: float
    p_better: float
    p_same: float
    half_width: float


def _draft(item: Paired, scale: float, df: float, margin: float, confidence: float) -> _Draft:
    """One benchmark's change and its one-sided p-values, before the suite-wide step."""
    ratios = item.log_ratios()
    if ratios is not None:
        shift = float(np.median(ratios))
    else:
        shift = float(np.median(np.log(item.head)) - np.median(np.log(item.base)))
    if df <= 0:
        return _Draft(shift, 1.0, 1.0, 1.0, math.inf)
    error = standard_error(max(scale, _TINY_SCALE), *item.sizes)
    law_df = max(df, _MIN_DF)
    t = item.direction.sign * shift / error
    # Equivalence (two one-sided tests): the change lies within +-min_effect.
    p_same = max(
        t_sf(t + margin / error, law_df),
        t_cdf(t - margin / error, law_df),
    )
    return _Draft(
        shift=shift,
        p_worse=t_sf(t, law_df),
        p_better=t_cdf(t, law_df),
        p_same=p_same,
        half_width=t_isf((1.0 - confidence) / 2.0, law_df) * error,
    )


def compare_pairs(
    items: Sequence[Paired],
    confidence: float = 0.95,
    min_effect: float = 0.05,
    false_discovery: float = 0.01,
    ungated: Collection[str] = (),
) -> list[TwoSampleResult]:
    """Judge every benchmark, with false discoveries controlled across all the gated ones.

    Every item needs at least one value on each side; two on one side give its noise
    some degrees of freedom of its own, and the family supplies the rest. The benchmarks
    named in ``ungated`` lend the others their noise as before, but their false
    discoveries are controlled among themselves, so they neither dilute nor use up the
    gated benchmarks' share."""
    if any(not item.base or not item.head for item in items):
        raise ValueError("every benchmark needs values from both commits")
    noise = moderated_noise(items)
    margin = math.log1p(min_effect)
    drafts = [
        _draft(item, scale, df, margin, confidence)
        for item, (scale, df) in zip(items, noise, strict=True)
    ]
    groups = [
        [i for i, item in enumerate(items) if (item.name in ungated) == outside]
        for outside in (False, True)
    ]
    reach: dict[int, float] = {}
    count: dict[int, int] = {}  # per benchmark, how many of its group are judged
    worse_found: dict[int, bool] = {}
    better_found: dict[int, bool] = {}
    for group in groups:
        for i in group:
            scale, df = noise[i]
            reach[i] = detectable_effect(
                scale, df, *items[i].sizes, len(group), false_discovery, min_effect
            )
        judged = [i for i in group if reach[i] <= FILTER_EFFECT]
        step = benjamini_hochberg(
            [drafts[i].p_worse for i in judged] + [drafts[i].p_better for i in judged],
            false_discovery,
        )
        for k, i in enumerate(judged):
            worse_found[i], better_found[i] = bool(step[k]), bool(step[len(judged) + k])
        count |= dict.fromkeys(group, len(judged))
    results = []
    for index, (item, draft) in enumerate(zip(items, drafts, strict=True)):
        worse = item.direction.sign * draft.shift
        if worse_found.get(index, False) and worse >= margin:
            verdict, sure = Verdict.REGRESSION, 1.0 - draft.p_worse
        elif better_found.get(index, False) and -worse >= margin:
            verdict, sure = Verdict.IMPROVEMENT, 1.0 - draft.p_better
        elif draft.p_same <= 1.0 - confidence:
            verdict, sure = Verdict.NO_CHANGE, 1.0 - draft.p_same
        else:
            best = min(draft.p_worse, draft.p_better, draft.p_same)
            verdict, sure = Verdict.INCONCLUSIVE, 1.0 - best
        scale, df = noise[index]
        results.append(
            TwoSampleResult(
                name=item.name,
                verdict=verdict,
                ratio=math.exp(draft.shift),
                ratio_low=math.exp(draft.shift - draft.half_width),
                ratio_high=math.exp(draft.shift + draft.half_width),
                confidence=sure,
                p_worse=draft.p_worse,
                p_better=draft.p_better,
                detectable_effect=detectable_effect(
                    scale, df, *item.sizes, count[index], false_discovery, min_effect
                )
                if index in worse_found
                else reach[index],
                noise_scale=scale if df > 0 else math.nan,
                noise_df=df,
                base_median=float(np.median(item.base)),
                head_median=float(np.median(item.head)),
                base_rounds=len(item.base),
                head_rounds=len(item.head),
                direction=item.direction,
                paired_rounds=len(item.pairs) if item.log_ratios() is not None else 0,
            )
        )
    return results
