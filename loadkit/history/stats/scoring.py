"""Scoring series: change points, drift and the gate, combined into one verdict each.

Scoring a machine takes two passes. The first reads each series' own history: change
points, the reference segment, and the between-commit scatter of its settled part. The
second judges each newest commit with that scatter shrunk towards its family's (see
:mod:`loadkit.history.stats.noise`), so a benchmark with three commits borrows what its
fifty siblings know. A check fails only where the regression also survives the
Benjamini–Hochberg procedure across all series: with no real change anywhere, the whole
check fails at most ``false_discovery`` of the time, however many series there are.

The gate compares the newest commit with the current stable segment: the commits since
the last change point. A change in the last few commits is too short to be a segment
(that is the point of a minimum segment length), so those commits are walked through the
gate one by one: if one of them shifted the level and the newest commit confirms it
(it differs from the old level the same way), it is named as a recent shift and
becomes the start of the reference. Then a regression is reported once, at
the commit that caused it, and the commits after it are judged against the new level.
"""

from __future__ import annotations

import functools
import graphlib
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from loadkit.history.stats.changepoints import (
    ChangePoint,
    describe_change_points,
    find_change_points,
)
from loadkit.history.stats.confidence import p_for_confidence
from loadkit.history.stats.drift import Drift, estimate_drift
from loadkit.history.stats.gate import (
    GateNoise,
    GateResult,
    Verdict,
    run_gate,
    typical_median_error,
)
from loadkit.history.stats.machine_level import (
    group_of,
    loading,
    machine_series,
    machine_shifts,
    relative_to_machine,
    segment_residuals,
)
from loadkit.history.stats.noise import (
    ChangeLaw,
    NoisePrior,
    NoiseProfile,
    change_law,
    cross_section_prior,
    fit_prior,
    moderated_scale,
    series_profile,
)
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

_MAX_REFERENCE = 40
_NOISE_WINDOW = 100
# How surely each commit since a recent shift must lean to the shifted side.
_PERSISTENT_LEANING = 0.8
# Series from which the first pass is worth other processes, and how many at most
# (for callers that run it in processes: this module runs none).
PARALLEL_FROM = 32
MAX_WORKERS = 4
# How the caller runs one function over many series: map(function, series, on_each).
SeriesMapper = Callable[
    [Callable[[Series], "SeriesHistory"], Sequence[Series], Callable[[], None] | None],
    list["SeriesHistory"],
]


@dataclass(frozen=True)
class ScoringOptions:
    """Knobs shared by every series in one check."""

    confidence: float = 0.95
    min_effect: float = 0.05
    min_size: int = 3
    drift_window: int = 40
    seed: int = 0
    false_discovery: float = 0.01


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
    prior_series: int = 0
    machine_shift: float = 0.0

    @property
    def verdict(self) -> Verdict:
        return self.gate.verdict if self.gate else Verdict.INCONCLUSIVE

    @property
    def worse_fraction(self) -> float:
        """How much worse the newest commit is than its reference (negative: better)."""
        return worse_fraction(self.gate.ratio, self.series.direction) if self.gate else 0.0


@dataclass(frozen=True)
class SeriesHistory:
    """The first pass over one series: what its own history says, before any sibling.

    ``tail_start`` is where the settled history ends: the last few commits may hold a
    shift no change point can describe yet, and would read as scatter. ``gate_series``
    is what the gate compares (the series itself, or with the machine's shift at each
    commit taken out, see :mod:`loadkit.history.stats.machine_level`); ``profile`` is its
    scatter, ``machine_shift`` the shift taken out of the newest commit (log) and
    ``machine_error`` how uncertain that is (log SD, from the benchmark's loading).
    """

    series: Series
    change_points: list[ChangePoint]
    reference_start: int
    tail_start: int
    profile: NoiseProfile
    gate_series: Series
    machine_shift: float = 0.0
    machine_error: float = 0.0

    @property
    def segment_starts(self) -> list[int]:
        return [0, *(cp.index for cp in self.change_points)]


def worse_fraction(ratio: float, direction: Direction) -> float:
    """Relative worsening for a ratio new/reference: +0.1 means 10 % worse."""
    return ratio - 1.0 if direction is Direction.LOWER_IS_BETTER else 1.0 - ratio


def _is_worse(ratio: float, direction: Direction) -> bool:
    return worse_fraction(ratio, direction) > 0.0


def change_is_worse(change: ChangePoint, direction: Direction) -> bool:
    """Whether a change point made things worse: its whole interval on the worse side.

    A split can be real while the level barely moves (a series that turns bimodal
    shifts its mean, not its median); such a change bounds a segment but is not
    called a regression.
    """
    return _is_worse(change.ratio_low, direction) and _is_worse(change.ratio_high, direction)


def _rng(series: Series, options: ScoringOptions) -> np.random.Generator:
    return np.random.default_rng([options.seed, len(series.commits)])


def analyse_series(series: Series, options: ScoringOptions) -> SeriesHistory:
    """Change points, reference segment and own scatter of a series (first pass)."""
    alpha = p_for_confidence(options.confidence)
    rng = _rng(series, options)
    centres = series.centres
    n = centres.size
    history = centres[:-1]
    found = find_change_points(np.log(history), alpha, rng, options.min_size) if n > 1 else []
    change_points = describe_change_points(history, found, options.confidence, rng)
    reference_start = change_points[-1].index if change_points else 0
    reference_start = max(reference_start, n - 1 - _MAX_REFERENCE)
    tail_start = max(reference_start + 1, n - options.min_size)
    profile = _settled_profile(series, change_points, tail_start)
    return SeriesHistory(series, change_points, reference_start, tail_start, profile, series)


def _settled_profile(
    series: Series, change_points: Sequence[ChangePoint], tail_start: int
) -> NoiseProfile:
    """Scatter and changes of the recent settled history: a runner replaced a year ago
    says little about how far the next commit can land."""
    window = _settled_window(tail_start)
    window_start = window.start
    settled = np.log(series.centres[window])
    settled_changes = [cp for cp in change_points if window_start < cp.index < tail_start]
    return series_profile(
        settled,
        [cp.index - window_start for cp in settled_changes],
        series.direction.sign,
        [math.log(cp.ratio) for cp in settled_changes],
    )


def _settled_window(tail_start: int) -> slice:
    """The recent settled commits noise is learned from (at most ``_NOISE_WINDOW``)."""
    return slice(max(0, tail_start - _NOISE_WINDOW), tail_start)


def shifts_of(reads: Sequence[SeriesHistory]) -> dict[str, dict[str, float]]:
    """The machine's shift at each commit, per group (see :mod:`machine_level`)."""
    residuals = [
        segment_residuals(np.log(read.series.centres), read.segment_starts) for read in reads
    ]
    return machine_shifts([read.series for read in reads], residuals)


def beside_machine(read: SeriesHistory, shifts: dict[str, dict[str, float]]) -> SeriesHistory:
    """The first pass with its group's machine shifts taken out of what the gate sees
    (unchanged where the group is too small to have any)."""
    group = shifts.get(group_of(read.series))
    if group is None:
        return read
    residuals = segment_residuals(np.log(read.series.centres), read.segment_starts)
    felt, felt_error = loading(read.series, residuals, group)
    gate_series = relative_to_machine(read.series, group, felt)
    profile = _settled_profile(gate_series, read.change_points, read.tail_start)
    newest_shift = group.get(read.series.commits[-1], 0.0)
    return replace(
        read,
        gate_series=gate_series,
        profile=profile,
        machine_shift=read.series.direction.sign * felt * newest_shift,
        machine_error=felt_error * abs(newest_shift),
    )


def judge(
    read: SeriesHistory, options: ScoringOptions, prior: NoisePrior | None = None
) -> SeriesScore:
    """The gate, recent shifts and drift for the newest commit (second pass).

    ``failing`` here ignores the other series; :func:`score_machine` applies the
    false-discovery control across them.
    """
    series = read.series
    centres = series.centres
    n = centres.size
    profile = read.profile
    if profile.df == 0 and n - 1 - read.reference_start >= 2:
        # A history too short to have settled still has its reference commits.
        reference = np.log(read.gate_series.centres[read.reference_start : n - 1])
        profile = series_profile(reference, [], series.direction.sign)
    scale, df = moderated_scale(profile, prior)
    # An uncertain share of the machine's shift is noise of the newest commit too.
    scale = math.hypot(scale, read.machine_error)
    pool = prior if prior is not None else _own_pool(profile, scale)
    # A family pooled over many quiet histories can put the change rate far below what
    # any one series could show, where noise hid the changes it had: no series is
    # taken to change less often than once in its own settled history.
    rate = max(pool.change.rate, 1.0 / (profile.transitions + 2.0))
    change = ChangeLaw(rate=rate, scale=pool.change.scale)
    window = read.gate_series.measurements[_settled_window(read.tail_start)]
    typical = typical_median_error([np.log(values) for values in window])
    noise = GateNoise(scale=scale, df=df, pool=pool, change=change, typical_within=typical)
    reference_start = read.reference_start

    measurements = read.gate_series.measurements

    def gate(
        start: int, stop: int, target: int, final: bool = False, level: float | None = None
    ) -> GateResult:
        return run_gate(
            measurements[start:stop],
            measurements[target],
            series.direction,
            options.confidence if level is None else level,
            options.min_effect,
            noise,
            with_detectable=final,
        )

    recent: list[RecentShift] = []
    for index in range(read.tail_start, n - 1):
        # A shift must persist: this commit and every one after it, the newest too, sit
        # on the same side of the old level, each at least fairly surely (one commit
        # alone on a noisy machine is seldom sure; together they are), else commit
        # ``index`` was a one-off and the reference stays as it was.
        leanings = {
            gate(reference_start, index, later, level=_PERSISTENT_LEANING).verdict
            for later in range(index, n)
        }
        if len(leanings) == 1 and leanings <= {Verdict.REGRESSION, Verdict.IMPROVEMENT}:
            recent.append(RecentShift(index=index, gate=gate(reference_start, index, index)))
            reference_start = index

    newest_gate = gate(reference_start, n - 1, n - 1, final=True) if n > 1 else None
    drift = estimate_drift(centres, options.confidence, options.drift_window)

    direction = series.direction
    level = options.confidence
    detected = (
        any(cp.confidence >= level and change_is_worse(cp, direction) for cp in read.change_points)
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
        change_points=read.change_points,
        recent_shifts=recent,
        drift=drift,
        gate=newest_gate,
        reference_start=reference_start,
        regression_detected=detected,
        failing=failing,
        prior_series=prior.series if prior is not None else 0,
        machine_shift=read.machine_shift,
    )


def _own_pool(profile: NoiseProfile, scale: float) -> NoisePrior:
    """A series' own standardized residuals as its tail, when it has no siblings."""
    tail = np.sort(profile.residuals / scale) if scale > 0 else np.empty(0)
    return NoisePrior(scale=scale, df=profile.df, tail=tail, series=1, change=change_law([profile]))


def score_series(
    series: Series, options: ScoringOptions | None = None, prior: NoisePrior | None = None
) -> SeriesScore:
    """Score one series as of its newest commit, alone or with a family prior."""
    options = options or ScoringOptions()
    return judge(analyse_series(series, options), options, prior)


def family_priors(reads: Sequence[SeriesHistory]) -> list[NoisePrior | None]:
    """Each series' prior: from the narrowest family with enough series to say.

    Where no family has history to learn from (every series one reference commit
    long), the siblings' deviations at this very commit stand in (see
    :func:`loadkit.history.stats.noise.cross_section_prior`).
    """
    members: dict[str, list[int]] = defaultdict(list)
    for position, read in enumerate(reads):
        for key in read.series.families:
            members[key].append(position)
    fitted: dict[str, NoisePrior | None] = {
        key: fit_prior([reads[i].profile for i in positions]) for key, positions in members.items()
    }
    crossed: dict[str, NoisePrior | None] = {}
    priors = []
    for read in reads:
        prior = next((fitted[k] for k in read.series.families if fitted[k] is not None), None)
        if prior is None:
            key = read.series.families[-1]
            if key not in crossed:
                crossed[key] = _cross_section(reads[i] for i in members[key])
            prior = crossed[key]
        priors.append(prior)
    return priors


def _cross_section(reads: Iterable[SeriesHistory]) -> NoisePrior | None:
    deviations = []
    factors = []
    for read in reads:
        levels = np.log(read.series.centres)
        if levels.size < 2:
            continue
        reference = levels[read.reference_start : -1]
        m = reference.size
        deviations.append(levels[-1] - float(np.median(reference)))
        factors.append(1.0 + (math.pi / 2.0 if m >= 3 else 1.0) / m)
    if not deviations:
        return None
    return cross_section_prior(np.array(deviations), float(np.median(factors)))


def benjamini_hochberg(p_values: Sequence[float], rate: float) -> np.ndarray:
    """Which hypotheses the Benjamini–Hochberg step-up procedure rejects at ``rate``.

    Valid for independent or positively dependent tests, as one machine's series are
    (they share runners); with every null true it bounds the chance of any rejection.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p)
    thresholds = rate * np.arange(1, p.size + 1) / p.size
    passed = np.flatnonzero(p[order] <= thresholds)
    rejected = np.zeros(p.size, dtype=bool)
    if passed.size:
        rejected[order[: passed[-1] + 1]] = True
    return rejected


def score_machine(
    series: Sequence[Series],
    options: ScoringOptions | None = None,
    on_series: Callable[[], None] | None = None,
    map_series: SeriesMapper | None = None,
) -> list[SeriesScore]:
    """Score every series of one machine as of its newest commit (all share it).

    Siblings inform each other twice: the machine's shift at each commit is taken out
    of what each gate compares (and each group's shift is judged as a series of its
    own), and the family's scatter is each series' noise prior. ``failing`` is
    controlled across all of them.
    """
    options = options or ScoringOptions()
    reads = analyse_all(series, options, on_series, map_series)
    shifts = shifts_of(reads)
    reads = [beside_machine(read, shifts) for read in reads]
    order = commit_order(one.commits for one in series)
    newest = order[-1] if order else None
    for group, group_shifts in sorted(shifts.items()):
        machine = machine_series(group, group_shifts, order)
        if len(machine.commits) > 1 and machine.commits[-1] == newest:
            reads.append(analyse_series(machine, options))
    priors = family_priors(reads)
    scores = [judge(read, options, prior) for read, prior in zip(reads, priors, strict=True)]
    p_worse = [s.gate.p_worse if s.gate is not None else 1.0 for s in scores]
    discovered = benjamini_hochberg(p_worse, options.false_discovery)
    return [
        replace(score, failing=score.failing and bool(found))
        for score, found in zip(scores, discovered, strict=True)
    ]


def analyse_all(
    series: Sequence[Series],
    options: ScoringOptions,
    on_series: Callable[[], None] | None = None,
    map_series: SeriesMapper | None = None,
) -> list[SeriesHistory]:
    """The first pass over every series. Each series is analysed on its own (its random
    draws are seeded by the series), so ``map_series`` - the caller's way to run
    :func:`analyse_series` over many, in other processes if it likes - changes no
    outcome; on a big machine the permutation tests are most of a check's time."""
    analyse = functools.partial(analyse_series, options=options)
    if map_series is not None:
        return map_series(analyse, series, on_series)
    analysed = []
    for one in series:
        analysed.append(analyse(one))
        if on_series is not None:
            on_series()
    return analysed


def commit_order(histories: Iterable[Sequence[str]]) -> list[str]:
    """One order of all commits in which every history keeps its own order."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for commits in histories:
        for commit in commits[:1]:
            sorter.add(commit)
        for before, after in itertools.pairwise(commits):
            sorter.add(after, before)
    return list(sorter.static_order())


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
