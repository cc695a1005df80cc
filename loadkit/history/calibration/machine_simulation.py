"""Simulated machines: the histories real asv result sets look like, with known truth.

A machine runs many benchmarks at each commit. Their histories are short or long, keep
raw samples or one value per commit, and share the machine's moods: two or three runner
speeds that every benchmark feels at the same commit (each by its own amount), one-off
blips, heavy-tailed outliers. Now and then a commit really moves a benchmark's level.
The gate is scored on one target series at a time with fifty siblings beside it, as
``check`` scores a machine: the siblings' histories form the target's noise prior and
share its false-discovery control.

Each scenario states a requirement on how often ``check`` would fail because of the
target. Beside it, a calibration study pools verdicts from machines of every kind and
asks whether verdicts given at confidence ≥ c are right at least c of the time, and a
suite study runs ``check`` on machines of 200 unchanged series.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from loadkit.history.calibration.simulation import meets_bound, requirement_sign
from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.scoring import (
    ScoringOptions,
    SeriesHistory,
    SeriesScore,
    analyse_series,
    benjamini_hochberg,
    beside_machine,
    family_priors,
    judge,
    score_machine,
    shifts_of,
)
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

SIBLINGS = 50
SIBLING_COMMITS = 40
TARGETS_PER_MACHINE = 25
BETWEEN_SD = 0.03
WITHIN_SD = 0.01
SAMPLES = 10
# Spread of scale between benchmarks of one machine (log-normal SD of the scale).
SCALE_SPREAD = 0.3
BLIP_SHARE = 0.05
# Runner speeds (relative) and how often a commit lands on each.
TWO_LEVELS = ((1.0, 0.65), (1.25, 0.35))
THREE_LEVELS = ((1.0, 0.5), (1.2, 0.3), (1.45, 0.2))
# How much of the runner's speed a benchmark feels: uniform between these.
RESPONSE = (0.5, 1.5)
CALIBRATION_LEVELS = (0.8, 0.9, 0.95, 0.99)
CALIBRATION_SLACK = 0.02
SUITE_SERIES = 200
SUITE_COMMITS = 10


@dataclass(frozen=True)
class MachineKind:
    """How a simulated machine's benchmarks scatter between commits.

    ``noise``: ``normal``; ``blips`` (5 % of commits land 10–30 % off, mostly slower);
    ``levels2``/``levels3`` (runner speeds shared by the machine's benchmarks at each
    commit); ``outliers`` (Student t with 3 df). ``samples`` per commit (1: asv kept one
    value). ``change_rate``: the share of commits that really move a benchmark's level.
    """

    noise: str
    samples: int = SAMPLES
    change_rate: float = 0.0


@dataclass(frozen=True)
class MachineScenario:
    """One row: a machine kind, the target's length and its newest commit's true change."""

    name: str
    kind: MachineKind
    commits: int
    newest_change: float
    bound: float
    at_least: bool


MACHINE_SCENARIOS: tuple[MachineScenario, ...] = (
    MachineScenario("short_aa_n2", MachineKind("normal"), 2, 0.0, 0.02, at_least=False),
    MachineScenario("short_aa_n3", MachineKind("normal"), 3, 0.0, 0.02, at_least=False),
    MachineScenario("short_aa_n5", MachineKind("normal"), 5, 0.0, 0.02, at_least=False),
    MachineScenario("short_aa_n10", MachineKind("normal"), 10, 0.0, 0.02, at_least=False),
    MachineScenario(
        "short_aa_n3_one_value", MachineKind("normal", samples=1), 3, 0.0, 0.02, at_least=False
    ),
    MachineScenario("step3x_after_1", MachineKind("normal"), 2, math.log(3.0), 0.95, True),
    MachineScenario(
        "step3x_after_1_one_value",
        MachineKind("normal", samples=1),
        2,
        math.log(3.0),
        0.95,
        at_least=True,
    ),
    MachineScenario("blips_none", MachineKind("blips"), 40, 0.0, 0.02, at_least=False),
    MachineScenario("levels2_none", MachineKind("levels2"), 40, 0.0, 0.02, at_least=False),
    MachineScenario("levels3_none", MachineKind("levels3"), 40, 0.0, 0.02, at_least=False),
    MachineScenario("levels2_short_n5", MachineKind("levels2"), 5, 0.0, 0.02, at_least=False),
    MachineScenario("outliers_none", MachineKind("outliers"), 40, 0.0, 0.02, at_least=False),
)

# Machines the calibration study draws from, and the target lengths it uses.
CALIBRATION_KINDS: tuple[MachineKind, ...] = (
    MachineKind("normal", change_rate=0.05),
    MachineKind("normal", samples=1, change_rate=0.05),
    MachineKind("blips", change_rate=0.05),
    MachineKind("levels2", change_rate=0.05),
    MachineKind("outliers", change_rate=0.05),
    MachineKind("normal", change_rate=0.15),
)
CALIBRATION_LENGTHS = (2, 3, 5, 10, 40)


@dataclass(frozen=True)
class SimulatedMachine:
    """Siblings' histories and the machine's runner levels, shared by its targets."""

    kind: MachineKind
    levels: np.ndarray
    scales: np.ndarray
    siblings: list[Series]


def _runner_levels(kind: MachineKind, commits: int, rng: np.random.Generator) -> np.ndarray:
    """Log speed of the runner at each commit (0 where the machine has one speed)."""
    table = {"levels2": TWO_LEVELS, "levels3": THREE_LEVELS}.get(kind.noise)
    if table is None:
        return np.zeros(commits)
    speeds = np.log([speed for speed, _ in table])
    shares = np.array([share for _, share in table])
    return speeds[rng.choice(speeds.size, commits, p=shares)]


def _commit_noise(
    kind: MachineKind, levels: np.ndarray, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """One benchmark's log deviation from its level at each commit."""
    n = levels.size
    if kind.noise == "outliers":
        return scale * rng.standard_t(3, n) / math.sqrt(3.0)
    deviation = scale * rng.standard_normal(n)
    if kind.noise == "blips":
        hit = rng.random(n) < BLIP_SHARE
        sizes = rng.uniform(math.log(1.1), math.log(1.3), n)
        signs = np.where(rng.random(n) < 0.7, 1.0, -1.0)
        deviation += hit * signs * sizes
    elif kind.noise in ("levels2", "levels3"):
        deviation = 0.5 * deviation + rng.uniform(*RESPONSE) * levels
    return deviation


def _level_path(kind: MachineKind, commits: int, rng: np.random.Generator) -> np.ndarray:
    """True log level of one benchmark: steps at a ``change_rate`` share of commits."""
    steps = rng.random(commits) < kind.change_rate
    steps[0] = False
    sizes = _change_sizes(commits, rng)
    return np.cumsum(np.where(steps, sizes, 0.0))


def _change_sizes(count: int, rng: np.random.Generator) -> np.ndarray:
    """True changes: 2 %–2x either way, log-uniform in size."""
    sizes = np.exp(rng.uniform(math.log(math.log(1.02)), math.log(math.log(2.0)), count))
    return np.where(rng.random(count) < 0.5, sizes, -sizes)


def _measurements(
    kind: MachineKind, log_levels: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Raw samples per commit around each commit's (noisy) level."""
    if kind.samples <= 1:
        return [np.array([math.exp(v)]) for v in log_levels]
    spread = WITHIN_SD * rng.standard_normal((log_levels.size, kind.samples))
    return list(np.exp(log_levels[:, None] + spread))


def _series(name: str, measurements: list[np.ndarray]) -> Series:
    commits = [f"c{i:04d}" for i in range(SIBLING_COMMITS - len(measurements), SIBLING_COMMITS)]
    return Series(
        name=name,
        commits=commits,
        measurements=measurements,
        direction=Direction.LOWER_IS_BETTER,
        unit="seconds",
        benchmark=f"suite.{name}",
    )


def simulate_machine(kind: MachineKind, rng: np.random.Generator) -> SimulatedMachine:
    """A machine: runner levels per commit and fifty sibling histories of 40 commits."""
    levels = _runner_levels(kind, SIBLING_COMMITS, rng)
    scales = BETWEEN_SD * np.exp(SCALE_SPREAD * rng.standard_normal(SIBLINGS + 1))
    siblings = []
    for index in range(SIBLINGS):
        path = _level_path(kind, SIBLING_COMMITS, rng)
        noisy = path + _commit_noise(kind, levels, float(scales[index]), rng)
        siblings.append(_series(f"sibling{index}", _measurements(kind, noisy, rng)))
    return SimulatedMachine(kind=kind, levels=levels, scales=scales, siblings=siblings)


def simulate_target(
    machine: SimulatedMachine, commits: int, newest_change: float, rng: np.random.Generator
) -> tuple[Series, np.ndarray]:
    """A target series over the machine's last ``commits`` commits, and its true log
    level at each; its newest commit moves by ``newest_change`` on top of whatever the
    machine's change rate did."""
    kind = machine.kind
    levels = machine.levels[SIBLING_COMMITS - commits :]
    path = _level_path(kind, commits, rng)
    path[-1] += newest_change
    scale = BETWEEN_SD * math.exp(SCALE_SPREAD * float(rng.standard_normal()))
    noisy = path + _commit_noise(kind, levels, scale, rng)
    return _series("target", _measurements(kind, noisy, rng)), path


def true_shift(path: np.ndarray, score: SeriesScore) -> float:
    """What the gate's verdict is about: the newest true level over the true level of
    the reference commits it was compared with (log)."""
    return float(path[-1] - np.median(path[score.reference_start : -1]))


@dataclass
class _Scorer:
    """Scores targets of one machine against its siblings, as ``check`` would."""

    machine: SimulatedMachine
    options: ScoringOptions
    reads: list[SeriesHistory]
    shifts: dict[str, dict[str, float]]
    sibling_p: list[float]

    @classmethod
    def of(cls, machine: SimulatedMachine, options: ScoringOptions) -> _Scorer:
        reads = [analyse_series(series, options) for series in machine.siblings]
        shifts = shifts_of(reads)
        reads = [beside_machine(read, shifts) for read in reads]
        priors = family_priors(reads)
        judged = [judge(r, options, p) for r, p in zip(reads, priors, strict=True)]
        p_worse = [s.gate.p_worse if s.gate is not None else 1.0 for s in judged]
        return cls(machine=machine, options=options, reads=reads, shifts=shifts, sibling_p=p_worse)

    def score(self, target: Series) -> tuple[SeriesScore, bool]:
        """The target's score and whether ``check`` fails because of it."""
        read = beside_machine(analyse_series(target, self.options), self.shifts)
        prior = family_priors([*self.reads, read])[-1]
        score = judge(read, self.options, prior)
        p_worse = score.gate.p_worse if score.gate is not None else 1.0
        discovered = benjamini_hochberg([*self.sibling_p, p_worse], self.options.false_discovery)
        return score, bool(score.failing and discovered[-1])


@dataclass(frozen=True)
class MachineCell:
    """Measured rates for one machine scenario."""

    scenario: str
    noise: str
    commits: int
    samples: int
    series: int
    check_fail_rate: float
    regression_rate: float
    no_change_rate: float
    median_detectable_effect: float
    requirement: str
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_machine_cell(
    scenario: MachineScenario, series: int, seed: int, options: ScoringOptions | None = None
) -> MachineCell:
    """Score ``series`` targets of one scenario, 25 to a simulated machine."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([seed, 200 + MACHINE_SCENARIOS.index(scenario)])
    fails = regressions = unchanged = 0
    detectable = []
    done = 0
    while done < series:
        scorer = _Scorer.of(simulate_machine(scenario.kind, rng), options)
        for _ in range(min(TARGETS_PER_MACHINE, series - done)):
            target, _ = simulate_target(
                scorer.machine, scenario.commits, scenario.newest_change, rng
            )
            score, failed = scorer.score(target)
            fails += failed
            regressions += score.verdict is Verdict.REGRESSION
            unchanged += score.verdict is Verdict.NO_CHANGE
            detectable.append(score.gate.detectable_effect if score.gate else math.inf)
            done += 1
    rate = fails / series
    return MachineCell(
        scenario=scenario.name,
        noise=scenario.kind.noise,
        commits=scenario.commits,
        samples=scenario.kind.samples,
        series=series,
        check_fail_rate=rate,
        regression_rate=regressions / series,
        no_change_rate=unchanged / series,
        median_detectable_effect=float(np.median(detectable)),
        requirement=f"check fails {requirement_sign(scenario)} {scenario.bound:.0%}",
        met=meets_bound(rate, scenario),
    )


@dataclass(frozen=True)
class CalibrationRow:
    """Of the verdicts given at confidence ≥ ``level``: how many, and the share right."""

    level: float
    verdicts: int
    right: float
    by_verdict: dict[str, tuple[int, float]]
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _right(verdict: Verdict, true_change: float, margin: float) -> bool:
    """Whether a verdict tells the truth about the newest commit (lower is better)."""
    if verdict is Verdict.REGRESSION:
        return true_change > 0.0
    if verdict is Verdict.IMPROVEMENT:
        return true_change < 0.0
    return abs(true_change) < margin


def run_calibration(
    series: int, seed: int, options: ScoringOptions | None = None
) -> list[CalibrationRow]:
    """Pool verdicts over machines of every kind and target length; tabulate by level.

    Every commit of every history — the target's newest included — really changes the
    level with the machine's ``change_rate``, so what the history teaches about how
    often commits change things holds for the commit being judged, as it does when a
    project's history is representative of its next commit. A verdict is right when it
    tells the truth about the newest commit against the reference commits it was
    compared with (see :func:`true_shift`).
    """
    # Verdicts are given from the lowest level tabulated up, so every row has some.
    options = options or ScoringOptions(confidence=min(CALIBRATION_LEVELS))
    rng = np.random.default_rng([seed, 300])
    margin = math.log1p(options.min_effect)
    given: list[tuple[Verdict, float, bool]] = []
    per_kind = max(1, series // len(CALIBRATION_KINDS))
    for kind in CALIBRATION_KINDS:
        done = 0
        while done < per_kind:
            scorer = _Scorer.of(simulate_machine(kind, rng), options)
            for _ in range(min(TARGETS_PER_MACHINE, per_kind - done)):
                commits = int(rng.choice(CALIBRATION_LENGTHS))
                target, path = simulate_target(scorer.machine, commits, 0.0, rng)
                score, _ = scorer.score(target)
                if score.gate is not None and score.verdict is not Verdict.INCONCLUSIVE:
                    right = _right(score.verdict, true_shift(path, score), margin)
                    given.append((score.verdict, score.gate.confidence, right))
                done += 1
    rows = []
    for level in CALIBRATION_LEVELS:
        chosen = [(v, r) for v, c, r in given if c >= level]
        share = sum(r for _, r in chosen) / len(chosen) if chosen else math.nan
        by_verdict = {}
        for verdict in (Verdict.REGRESSION, Verdict.IMPROVEMENT, Verdict.NO_CHANGE):
            mine = [r for v, r in chosen if v is verdict]
            by_verdict[verdict.value] = (len(mine), sum(mine) / len(mine) if mine else math.nan)
        met = not chosen or share >= level - CALIBRATION_SLACK
        rows.append(
            CalibrationRow(
                level=level, verdicts=len(chosen), right=share, by_verdict=by_verdict, met=met
            )
        )
    return rows


@dataclass(frozen=True)
class SuiteCell:
    """How often ``check`` fails a whole machine of unchanged series."""

    suites: int
    series_per_suite: int
    commits: int
    fail_rate: float
    regression_verdicts_per_suite: float
    bound: float
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_suite(suites: int, seed: int, options: ScoringOptions | None = None) -> SuiteCell:
    """``check`` on ``suites`` machines of 200 unchanged 10-commit series each."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([seed, 400])
    kind = MachineKind("normal")
    failed = 0
    regression_verdicts = 0
    for _ in range(suites):
        levels = np.zeros(SUITE_COMMITS)
        batch = []
        for index in range(SUITE_SERIES):
            scale = BETWEEN_SD * math.exp(SCALE_SPREAD * float(rng.standard_normal()))
            noisy = _commit_noise(kind, levels, scale, rng)
            batch.append(_series(f"bench{index}", _measurements(kind, noisy, rng)))
        scores = score_machine(batch, options)
        failed += any(s.failing for s in scores)
        regression_verdicts += sum(s.verdict is Verdict.REGRESSION for s in scores)
    bound = 0.02
    rate = failed / suites
    return SuiteCell(
        suites=suites,
        series_per_suite=SUITE_SERIES,
        commits=SUITE_COMMITS,
        fail_rate=rate,
        regression_verdicts_per_suite=regression_verdicts / suites,
        bound=bound,
        met=rate <= bound,
    )
