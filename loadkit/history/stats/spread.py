"""How much a figure moves between runs of one commit, and what that lets a comparison see.

An A/A study runs the same commit several times: any difference between its runs is
noise. The spread is the standard deviation of the natural log of the values (for small
spreads, the relative standard deviation: 0.05 is about 5 %), which is the same for a
figure and its inverse and does not depend on the unit. From it follows the smallest
relative change a comparison detects with the usual error rates:

* one run against one run, the noise taken as known from the A/A study: a z-test on the
  difference of two logs;
* five runs against five, interleaved (A B A B ...) so a slow spell of the machine hits
  both sides: a two-sample t-test on the mean logs with 8 degrees of freedom.

Pure functions of plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

ALPHA = 0.05  # two-sided false-alarm rate
POWER = 0.8  # chance to see an effect of the detectable size


def log_spread(values: Sequence[float]) -> float:
    """Standard deviation (n - 1) of the logs of ``values``.

    Zero when every value is the same (counts that stay 0 included); NaN with fewer
    than two values, or when some value is zero or negative and they differ (no log
    scale: such a figure has no relative spread)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or len(finite) < len(values):
        return math.nan
    if max(finite) == min(finite):
        return 0.0
    if min(finite) <= 0:
        return math.nan
    logs = [math.log(v) for v in finite]
    mean = sum(logs) / len(logs)
    return math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))


def detectable_effect(
    spread: float, runs: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest relative change (0.05 = 5 %) a comparison of ``runs`` runs per side
    detects with false-alarm rate ``alpha`` and the given ``power``, for a figure of
    this log spread. One run a side uses the normal law (the spread is known from the
    A/A study); more use Student's t on the runs' own spread."""
    if runs < 1:
        raise ValueError(f"a comparison needs at least one run a side, not {runs}")
    if not math.isfinite(spread):
        return math.nan
    if runs == 1:
        k = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    else:
        df = 2 * runs - 2
        k = stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)
    return math.expm1(k * spread * math.sqrt(2 / runs))


@dataclass(frozen=True)
class SpreadRow:
    """One metric of an A/A study."""

    name: str
    values: tuple[float, ...]
    spread: float
    effect_1: float
    effect_5: float


def spread_row(name: str, values: Sequence[float]) -> SpreadRow:
    spread = log_spread(values)
    return SpreadRow(
        name, tuple(values), spread, detectable_effect(spread, 1), detectable_effect(spread, 5)
    )


def band(spread: float) -> str:
    """The spread's band as the project's goals are phrased: ≤ 3 %, ≤ 5 %, ≤ 10 %, more."""
    if not math.isfinite(spread):
        return "n/a"
    for limit in (0.03, 0.05, 0.10, 0.20):
        if spread <= limit:
            return f"<= {limit:.0%}"
    return "> 20%"


HEADLINE_LIMIT = 0.03  # a headline figure's run-to-run spread must stay within this
GATED_LIMIT = 0.10  # and every other gated figure's within this


def verdict(role: str, spread: float) -> str:
    """Whether a figure of this role (``headline``, ``gated``, ``informational``) is as
    steady as the suite requires: ``ok``, ``too noisy``, ``not gated`` (informational
    figures may move as they like: they never fail a check) or ``n/a``."""
    if role == "informational":
        return "not gated"
    if not math.isfinite(spread):
        return "n/a"
    limit = HEADLINE_LIMIT if role == "headline" else GATED_LIMIT
    return "ok" if spread <= limit else "too noisy"
