"""Repeated trials of one measurement: warm-up discarded, the median of the rest kept.

A single window of a noisy figure (a burst of spawns over a dozen milliseconds, a p99
over a few thousand events) moves from run to run by as much as the change it should
reveal. Running the same measurement a few times in a row and keeping the median of the
trials (after throwing away the first ones, which pay for cold caches, JIT-less first
calls and connection pools filling) shrinks that spread roughly by the square root of
the trials kept, and the trials' own values say how noisy the figure was in this run:
they are recorded as the run's samples.

Counts that must be zero (leaks, lost messages) are not smoothed: they are summed over
every trial, warm-up included, so a single bad trial still shows.

Everything here is pure except :func:`run_trials` and :func:`run_trials_sync`, which
only call the measurement they are given.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

Trial = Mapping[str, float]


@dataclass(frozen=True)
class TrialPlan:
    """How many trials to run: ``warmup`` thrown away first, then ``kept`` measured."""

    kept: int
    warmup: int = 1

    def __post_init__(self) -> None:
        if self.kept < 1:
            raise ValueError(f"a trial plan keeps at least one trial, not {self.kept}")
        if self.warmup < 0:
            raise ValueError(f"warm-up trials cannot be negative ({self.warmup})")

    @property
    def total(self) -> int:
        return self.kept + self.warmup


@dataclass
class TrialResult:
    """The figures of a set of trials: medians (sums for exact counts) and, per
    smoothed figure, the kept trials' values in the order they ran."""

    metrics: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def merged(self, other: TrialResult) -> TrialResult:
        """Both results' figures; the other's win where both name one."""
        return TrialResult(self.metrics | other.metrics, self.samples | other.samples)


@dataclass
class Measured:
    """A workload's figures as the asv suite's ``setup_cache`` hands them to its
    ``track_`` methods: the metrics, and for figures measured in trials the kept trials'
    values (asv records them as the run's samples)."""

    metrics: dict[str, float]
    samples: dict[str, list[float]] = field(default_factory=dict)


def median(values: Sequence[float]) -> float:
    """The median, or NaN when any value is NaN: a failed trial fails the figure instead
    of being quietly outvoted by the others."""
    if not values:
        return math.nan
    if any(math.isnan(v) for v in values):
        return math.nan
    return float(statistics.median(values))


def combine(
    trials: Sequence[Trial],
    warmup: int,
    exact: Collection[str] = (),
    sparse: Collection[str] = (),
) -> TrialResult:
    """Reduce trials to one figure each.

    Every trial must report the same metrics. Metrics in ``exact`` are summed over all
    trials (warm-up included) and carry no samples; every other metric is the median of
    the trials after the first ``warmup``, which become its samples. A metric in
    ``sparse`` may have no value in a trial (NaN: nothing of it happened in that
    window, such as no poll in a block of rounds on a stalled host): those trials are
    left out of its median and samples, and only a metric no trial measured is NaN."""
    if len(trials) <= warmup:
        raise ValueError(f"{len(trials)} trials leave none after {warmup} warm-up")
    names = list(trials[0])
    for index, trial in enumerate(trials):
        if set(trial) != set(names):
            missing = sorted(set(names) ^ set(trial))
            raise ValueError(f"trial {index} reports other metrics than trial 0: {missing}")
    kept = trials[warmup:]
    result = TrialResult()
    for name in names:
        if name in exact:
            result.metrics[name] = float(sum(float(t[name]) for t in trials))
            continue
        values = [float(t[name]) for t in kept]
        if name in sparse:
            values = [v for v in values if not math.isnan(v)]
        result.metrics[name] = median(values)
        result.samples[name] = values
    return result


async def run_trials(
    measure: Callable[[int], Awaitable[Trial]],
    plan: TrialPlan,
    exact: Collection[str] = (),
) -> TrialResult:
    """Run ``measure(i)`` for each trial ``i`` in turn (never concurrently: trials
    would then measure each other) and combine them."""
    trials = [await measure(i) for i in range(plan.total)]
    return combine(trials, plan.warmup, exact)


def run_trials_sync(
    measure: Callable[[int], Trial], plan: TrialPlan, exact: Collection[str] = ()
) -> TrialResult:
    """:func:`run_trials` for a measurement that is not a coroutine."""
    return combine([measure(i) for i in range(plan.total)], plan.warmup, exact)
