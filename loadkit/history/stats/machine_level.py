"""What a machine's benchmarks do together: the runner's speed at each commit.

On shared CI runners every benchmark of one job lands on the same machine, so a slow
runner slows them all at once: in real asv histories (django-asv, BLAS-Benchmarks) most
of a series' scatter is shared by its siblings at the same commit. Measured against its
own level, one benchmark cannot tell a slow runner from a slow commit; measured against
its siblings, it can.

At each commit, the machine's shift is the median, over the benchmarks of one
environment and unit, of how far each sits from its own segment's level (signed so that
positive is slower). Each benchmark feels it by its own amount (its loading, fitted on
its history). A benchmark's gate then compares its newest commit with its reference
after taking out what it feels of the shift at each commit involved, and its noise is
learned from residuals with the shift taken out too. Change points and drift still read the raw
series: a persistent move of everything is a change of every series' level, found in
each, while the shift itself only follows what is passing.

The shift is kept as a series of its own, one per environment and unit, judged like any
benchmark: a commit that slows every benchmark beyond what the runner usually does is a
regression of the machine, reported once rather than hidden.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

# Benchmarks of one environment and unit needed at a commit for their median to stand
# for the runner, rather than for a few benchmarks' own moves.
MIN_SIBLINGS = 8
MACHINE_PREFIX = "(all benchmarks)"
# Fitting a benchmark's loading on the shifts: iterations, the smallest residual a
# weight divides by (log units), and the largest loading believed.
_LOADING_ITERATIONS = 10
_LOADING_FLOOR = 1e-3
_MAX_LOADING = 2.0
_LOADING_PRIOR_SD = 0.5


def is_machine(series: Series) -> bool:
    """Whether a series is a machine's shift rather than a benchmark."""
    return series.benchmark == MACHINE_PREFIX


def group_of(series: Series) -> str:
    """Benchmarks that share a runner and a unit (time, a rate, …) move together."""
    return f"{series.unit}|{series.environment}"


def segment_residuals(levels: np.ndarray, starts: Sequence[int]) -> np.ndarray:
    """Log levels minus their segment's median; the newest commit against the median of
    the commits before it in its segment (it is the one being judged)."""
    residuals = np.zeros(levels.size)
    edges = [*starts, levels.size]
    for start, stop in itertools.pairwise(edges):
        body = levels[start:stop]
        if stop == levels.size and body.size > 1:
            reference = float(np.median(body[:-1]))
            residuals[start : stop - 1] = body[:-1] - reference
            residuals[stop - 1] = body[-1] - reference
        else:
            residuals[start:stop] = body - np.median(body)
    return residuals


def machine_shifts(
    series: Sequence[Series], residuals: Sequence[np.ndarray]
) -> dict[str, dict[str, float]]:
    """Per group, the shift (log, slower positive) at each commit where enough of its
    benchmarks ran; groups too small for any commit are left out."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, one in enumerate(series):
        members[group_of(one)].append(index)
    shifts: dict[str, dict[str, float]] = {}
    for group, indices in members.items():
        if len(indices) < MIN_SIBLINGS:
            continue
        by_commit: dict[str, list[float]] = defaultdict(list)
        for index in indices:
            sign = series[index].direction.sign
            for commit, value in zip(series[index].commits, residuals[index], strict=True):
                by_commit[commit].append(sign * float(value))
        group_shifts = {
            commit: float(np.median(values))
            for commit, values in by_commit.items()
            if len(values) >= MIN_SIBLINGS
        }
        if group_shifts:
            shifts[group] = group_shifts
    return shifts


def loading(series: Series, residuals: np.ndarray, shifts: dict[str, float]) -> tuple[float, float]:
    """How much of the machine's shift this benchmark feels (0: none, 1: all of it),
    and the standard error of that estimate.

    Benchmarks feel a slow runner by different amounts (memory-bound code more than
    a cached loop), and one that does not feel it at all would only gain noise from
    having it taken out. A slope through the origin of the benchmark's residuals on
    the shifts, fitted by least absolute deviations (reweighted least squares, so a
    few commits of the benchmark's own do not decide), over its history without the
    newest commit, kept within [0, 2]. Where the runner hardly moved, the slope says
    little, and is shrunk towards 1 by its own standard error; what remains uncertain
    widens the gate by that error times the newest commit's shift.
    """
    sign = series.direction.sign
    pairs = [
        (shifts[c], sign * float(r))
        for c, r in zip(series.commits[:-1], residuals[:-1], strict=True)
        if c in shifts
    ]
    if len(pairs) < MIN_SIBLINGS:
        return 1.0, _LOADING_PRIOR_SD
    x, y = (np.array(v) for v in zip(*pairs, strict=True))
    if float(np.dot(x, x)) <= 0.0:
        return 1.0, _LOADING_PRIOR_SD
    slope = 1.0
    for _ in range(_LOADING_ITERATIONS):
        weights = 1.0 / np.maximum(np.abs(y - slope * x), _LOADING_FLOOR)
        slope = float(np.sum(weights * x * y) / np.sum(weights * x * x))
    # A normal prior of SD 0.5 around "feels all of it".
    spread = 1.4826 * float(np.median(np.abs(y - slope * x)))
    error2 = spread**2 / float(np.dot(x, x)) if spread > 0 else 0.0
    prior2 = _LOADING_PRIOR_SD**2
    shrunk = (slope * prior2 + error2) / (prior2 + error2)
    posterior_sd = math.sqrt(prior2 * error2 / (prior2 + error2))
    return min(max(shrunk, 0.0), _MAX_LOADING), posterior_sd


def relative_to_machine(one: Series, shifts: dict[str, float], felt: float = 1.0) -> Series:
    """The series with the share ``felt`` of each commit's machine shift taken out."""
    sign = one.direction.sign
    factors = [math.exp(-sign * felt * shifts.get(commit, 0.0)) for commit in one.commits]
    return replace(
        one, measurements=[m * f for m, f in zip(one.measurements, factors, strict=True)]
    )


def machine_series(group: str, shifts: dict[str, float], order: Sequence[str]) -> Series:
    """The machine's shift over the commits, as a series of speed factors (> 1 slower)."""
    unit, environment = group.split("|", 1)
    commits = [commit for commit in order if commit in shifts]
    suffix = f" [{environment}]" if environment else ""
    return Series(
        name=f"{MACHINE_PREFIX} {unit or 'unitless'}{suffix}",
        commits=commits,
        measurements=[np.array([math.exp(shifts[c])]) for c in commits],
        direction=Direction.LOWER_IS_BETTER,
        unit="ratio",
        benchmark=MACHINE_PREFIX,
        environment=environment,
    )
