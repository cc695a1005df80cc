"""Scoring one series: change points, drift and the gate, combined into one verdict.

The gate compares the newest commit with the current stable segment: the commits since
the last change point. A change in the last few commits is too short to be a segment
(that is the point of a minimum segment length), so those commits are walked through the
gate one by one: if one of them shifted the level and the newest commit confirms it
(it differs from the old level the same way), it is named as a recent shift and
becomes the start of the reference. Then a regression is reported once, at
the commit that caused it, and the commits after it are judged against the new level.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from loadkit.history.changepoints import ChangePoint, describe_change_points, find_change_points
from loadkit.history.confidence import p_for_confidence
from loadkit.history.direction import Direction
from loadkit.history.drift import Drift, estimate_drift
from loadkit.history.gate import GateResult, Verdict, run_gate
from loadkit.history.series import Series

_MAX_REFERENCE = 40


@dataclass(frozen=True)
class ScoringOptions:
    """Knobs shared by every series in one check."""

    confidence: float = 0.95
    min_effect: float = 0.05
    min_size: int = 3
    drift_window: int = 40
    seed: int = 0


@dataclass(frozen=True)
class RecentShift:
    """A level shift in the last commits, found by the gate before a segment could form."""

    index: int
    gate: GateResult


@dataclass(frozen=True)
class SeriesScore:
    """Everything the table, the JSON and the report page say about one series."""

    series: Series
    change_points: list[ChangePoint]
    recent_shifts: list[RecentShift]
    drift: Drift | None
    gate: GateResult | None
    reference_start: int
    regression_detected: bool
    failing: bool

    @property
    def verdict(self) -> Verdict:
        return self.gate.verdict if self.gate else Verdict.INCONCLUSIVE

    @property
    def worse_fraction(self) -> float:
        """How much worse the newest commit is than its reference (negative: better)."""
        return worse_fraction(self.gate.ratio, self.series.direction) if self.gate else 0.0


def worse_fraction(ratio: float, direction: Direction) -> float:
    """Relative worsening for a ratio new/reference: +0.1 means 10 % worse."""
    return ratio - 1.0 if direction is Direction.LOWER_IS_BETTER else 1.0 - ratio


def _is_worse(ratio: float, direction: Direction) -> bool:
    return worse_fraction(ratio, direction) > 0.0


def history_scatter(log_levels: np.ndarray, boundaries: list[int]) -> tuple[float, int] | None:
    """Between-commit SD of log levels around each segment's mean, with its df.

    How much a benchmark moves from commit to commit is a property of the benchmark and
    the machine, and persists across level shifts; pooling it over every segment gives
    the gate a noise estimate even when the current segment is one or two commits long.
    """
    edges = [0, *boundaries, log_levels.size]
    squares = 0.0
    df = 0
    for start, stop in itertools.pairwise(edges):
        segment = log_levels[start:stop]
        if segment.size >= 2:
            squares += float(np.sum((segment - segment.mean()) ** 2))
            df += segment.size - 1
    if df < 1:
        return None
    return math.sqrt(squares / df), df


def score_series(series: Series, options: ScoringOptions | None = None) -> SeriesScore:
    """Score a series as of its newest commit."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([options.seed, len(series.commits)])
    alpha = p_for_confidence(options.confidence)
    centres = series.centres
    n = centres.size
    history = centres[:-1]

    found = find_change_points(np.log(history), alpha, rng, options.min_size) if n > 1 else []
    change_points = describe_change_points(history, found, options.confidence, rng)
    reference_start = change_points[-1].index if change_points else 0
    reference_start = max(reference_start, n - 1 - _MAX_REFERENCE)

    # Noise is learned from the settled history only: the last few commits may hold a
    # shift that no change point can describe yet, and would read as scatter.
    tail_start = max(reference_start + 1, n - options.min_size)
    settled = np.log(history[:tail_start])
    scatter = history_scatter(settled, [cp.index for cp in change_points if cp.index < tail_start])

    def gate(start: int, stop: int, target: int, with_interval: bool = True) -> GateResult:
        return run_gate(
            series.measurements[start:stop],
            series.measurements[target],
            series.direction,
            options.confidence,
            options.min_effect,
            rng,
            history_scatter=scatter,
            with_interval=with_interval,
        )

    recent: list[RecentShift] = []
    for index in range(tail_start, n - 1):
        candidate = gate(reference_start, index, index, with_interval=False)
        if candidate.verdict not in (Verdict.REGRESSION, Verdict.IMPROVEMENT):
            continue
        # A shift must persist: the newest commit has to sit on the same side of the old
        # level, else commit ``index`` was a one-off and the reference stays as it was.
        if gate(reference_start, index, n - 1, with_interval=False).verdict is candidate.verdict:
            recent.append(RecentShift(index=index, gate=candidate))
            reference_start = index

    newest_gate = gate(reference_start, n - 1, n - 1) if n > 1 else None
    drift = estimate_drift(centres, options.confidence, options.drift_window)

    direction = series.direction
    level = options.confidence
    detected = (
        any(cp.confidence >= level and _is_worse(cp.ratio, direction) for cp in change_points)
        or any(shift.gate.verdict is Verdict.REGRESSION for shift in recent)
        or (
            drift is not None
            and drift.confidence >= level
            and _is_worse(1.0 + drift.pct_per_commit / 100.0, direction)
        )
        or (newest_gate is not None and newest_gate.verdict is Verdict.REGRESSION)
    )
    failing = (
        newest_gate is not None
        and newest_gate.verdict is Verdict.REGRESSION
        and newest_gate.confidence >= level
        and worse_fraction(newest_gate.ratio, direction) >= options.min_effect
    )
    return SeriesScore(
        series=series,
        change_points=change_points,
        recent_shifts=recent,
        drift=drift,
        gate=newest_gate,
        reference_start=reference_start,
        regression_detected=detected,
        failing=failing,
    )


_VERDICT_ORDER = {
    Verdict.REGRESSION: 0,
    Verdict.INCONCLUSIVE: 1,
    Verdict.NO_CHANGE: 2,
    Verdict.IMPROVEMENT: 3,
}


def worst_first(scores: list[SeriesScore]) -> list[SeriesScore]:
    """Failing series first, then by verdict severity, then by how much worse."""

    def key(score: SeriesScore) -> tuple[int, int, int, float, str]:
        effect = score.worse_fraction
        return (
            0 if score.failing else 1,
            _VERDICT_ORDER[score.verdict],
            0 if score.regression_detected else 1,
            -effect if math.isfinite(effect) else 0.0,
            score.series.name,
        )

    return sorted(scores, key=key)
