"""Simulation study: how often the scoring flags series with known truth.

Each scenario generates per-commit values with a known change (or none) and a known
noise shape; the share of series flagged is the false-alarm rate (no change) or the
power (a change). asv's own ``step_detect`` runs on the very same series, through asv's
package, with asv's default 5 % regression threshold, so the comparison is like for like.
Everything is seeded, so a table can be reproduced exactly.

A series counts as flagged by loadkit when its score reports a regression anywhere — a
change point upward, an upward drift, or a REGRESSION gate verdict — at confidence
0.95 (the ``check`` default); by asv when ``detect_regressions`` returns one. Both
count regressions only (values going up, as for a time), so they answer one question.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from asv import step_detect

from loadkit.history.stats.scoring import ScoringOptions, score_series
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

STEP_AT = 30
BIMODAL_SHARE = 0.3
BIMODAL_OFFSET_SDS = 3.0
AR1_RHO = 0.6
ASV_THRESHOLD = 0.05


@dataclass(frozen=True)
class Scenario:
    """A family of series: a noise shape plus a true level path.

    ``bound``/``at_least`` state the requirement on the flag rate; ``step`` is the
    commit where a step starts (for localization), if any.
    """

    name: str
    noise: str
    level: Callable[[int], np.ndarray]
    bound: float
    at_least: bool
    step: int | None = None
    localized_at_least: float | None = None


def _flat(n: int) -> np.ndarray:
    return np.ones(n)


def _step(size: float) -> Callable[[int], np.ndarray]:
    def level(n: int) -> np.ndarray:
        path = np.ones(n)
        path[STEP_AT:] += size
        return path

    return level


def _drift(total: float) -> Callable[[int], np.ndarray]:
    def level(n: int) -> np.ndarray:
        return 1.0 + total * np.arange(n) / (n - 1)

    return level


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("none", "normal", _flat, 0.01, at_least=False),
    Scenario("step5", "normal", _step(0.05), 0.90, at_least=True, step=STEP_AT),
    Scenario("step10", "normal", _step(0.10), 0.99, True, step=STEP_AT, localized_at_least=0.95),
    Scenario("step20", "normal", _step(0.20), 0.99, at_least=True, step=STEP_AT),
    Scenario("drift10", "normal", _drift(0.10), 0.90, at_least=True),
    Scenario("ar1_none", "ar1", _flat, 0.05, at_least=False),
    Scenario("lognormal_none", "lognormal", _flat, 0.02, at_least=False),
    Scenario("bimodal_none", "bimodal", _flat, 0.02, at_least=False),
)


def noise(kind: str, n: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Relative noise with standard deviation ``sd`` per mode and the named shape.

    ``ar1`` is stationary AR(1) with ρ = 0.6; ``lognormal`` is a right-skewed
    log-normal(0, 1) standardized to ``sd``; ``bimodal`` puts 30 % of commits in a second
    mode 3 SD higher, as when a build lands on an unlucky memory layout.
    """
    if kind == "normal":
        return sd * rng.standard_normal(n)
    if kind == "ar1":
        innovations = rng.standard_normal(n) * math.sqrt(1.0 - AR1_RHO**2)
        path = np.empty(n)
        path[0] = rng.standard_normal()
        for i in range(1, n):
            path[i] = AR1_RHO * path[i - 1] + innovations[i]
        return sd * path
    if kind == "lognormal":
        draws = rng.lognormal(0.0, 1.0, n)
        mean = math.exp(0.5)
        spread = math.sqrt((math.e - 1.0) * math.e)
        return sd * (draws - mean) / spread
    if kind == "bimodal":
        second = rng.random(n) < BIMODAL_SHARE
        return sd * (rng.standard_normal(n) + BIMODAL_OFFSET_SDS * second)
    raise ValueError(f"unknown noise kind {kind!r}")


def simulate(scenario: Scenario, n: int, sd: float, rng: np.random.Generator) -> np.ndarray:
    """One series of per-commit values (lower is better, like a time)."""
    return scenario.level(n) * (1.0 + noise(scenario.noise, n, sd, rng))


def asv_flags(values: np.ndarray) -> bool:
    """Whether asv's step detector reports a regression, with asv's default threshold."""
    steps = step_detect.detect_steps([float(v) for v in values])
    _, _, positions = step_detect.detect_regressions(steps, threshold=ASV_THRESHOLD)
    return positions is not None


@dataclass(frozen=True)
class Cell:
    """Measured rates for one scenario."""

    scenario: str
    noise: float
    n: int
    series: int
    loadkit_flag_rate: float
    loadkit_localized_rate: float | None
    asv_flag_rate: float
    requirement: str
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Bounded(Protocol):
    """A scenario's requirement on a rate: at least or at most ``bound``."""

    @property
    def bound(self) -> float: ...

    @property
    def at_least(self) -> bool: ...


def requirement_sign(scenario: Bounded) -> str:
    """How a scenario's rate must compare with its bound."""
    return ">=" if scenario.at_least else "<="


def meets_bound(rate: float, scenario: Bounded) -> bool:
    return rate >= scenario.bound if scenario.at_least else rate <= scenario.bound


def _requirement(scenario: Scenario) -> str:
    text = f"flags {requirement_sign(scenario)} {scenario.bound:.0%}"
    if scenario.localized_at_least is not None:
        text += f", localized ±1 >= {scenario.localized_at_least:.0%}"
    return text


def run_cell(
    scenario: Scenario,
    series: int,
    seed: int,
    n: int = 40,
    sd: float = 0.02,
    options: ScoringOptions | None = None,
) -> Cell:
    """Simulate ``series`` series of one scenario and score each with loadkit and asv."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    flagged = localized = asv_flagged = 0
    commits = [f"c{i:04d}" for i in range(n)]
    for _ in range(series):
        values = simulate(scenario, n, sd, rng)
        score = score_series(
            Series(
                scenario.name, commits, [np.array([v]) for v in values], Direction.LOWER_IS_BETTER
            ),
            options,
        )
        flagged += score.regression_detected
        if scenario.step is not None:
            localized += any(
                abs(cp.index - scenario.step) <= 1
                and cp.ratio > 1.0
                and cp.confidence >= options.confidence
                for cp in score.change_points
            )
        asv_flagged += asv_flags(values)
    flag_rate = flagged / series
    localized_rate = localized / series if scenario.step is not None else None
    met = meets_bound(flag_rate, scenario)
    if scenario.localized_at_least is not None and localized_rate is not None:
        met = met and localized_rate >= scenario.localized_at_least
    return Cell(
        scenario=scenario.name,
        noise=sd,
        n=n,
        series=series,
        loadkit_flag_rate=flag_rate,
        loadkit_localized_rate=localized_rate,
        asv_flag_rate=asv_flagged / series,
        requirement=_requirement(scenario),
        met=met,
    )


# --- the gate, as ``check`` uses it -------------------------------------------------
#
# The table above scores single series (one value per commit, flags anywhere in the
# history). ``check`` exits on the gate alone, with raw samples, so it gets its own
# cells: 40 commits of 10 samples each, 2 % spread within a commit, 1 % between
# commits, and either no change or a step at the newest commit.

GATE_SAMPLES = 10
GATE_WITHIN_SD = 0.02
GATE_BETWEEN_SD = 0.01


@dataclass(frozen=True)
class GateScenario:
    """Between-commit noise shape and the newest commit's true relative change."""

    name: str
    noise: str
    newest_step: float
    bound: float
    at_least: bool


GATE_SCENARIOS: tuple[GateScenario, ...] = (
    GateScenario("gate_none", "normal", 0.0, 0.01, at_least=False),
    GateScenario("gate_step10", "normal", 0.10, 0.90, at_least=True),
    GateScenario("gate_ar1_none", "ar1", 0.0, 0.02, at_least=False),
    GateScenario("gate_lognormal_none", "lognormal", 0.0, 0.02, at_least=False),
    GateScenario("gate_bimodal_none", "bimodal", 0.0, 0.02, at_least=False),
)


@dataclass(frozen=True)
class GateCell:
    """How often ``check`` would fail a series, and the effect it can detect."""

    scenario: str
    n: int
    samples: int
    within_noise: float
    between_noise: float
    series: int
    check_fail_rate: float
    regression_rate: float
    median_detectable_effect: float
    requirement: str
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_gate_cell(
    scenario: GateScenario,
    series: int,
    seed: int,
    n: int = 40,
    options: ScoringOptions | None = None,
) -> GateCell:
    """Simulate ``series`` sampled histories and score their newest commit."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([seed, 100 + GATE_SCENARIOS.index(scenario)])
    commits = [f"c{i:04d}" for i in range(n)]
    fails = regressions = 0
    detectable = []
    for _ in range(series):
        levels = 1.0 + noise(scenario.noise, n, GATE_BETWEEN_SD, rng)
        levels[-1] *= 1.0 + scenario.newest_step
        spread = 1.0 + GATE_WITHIN_SD * rng.standard_normal((n, GATE_SAMPLES))
        measurements = list(levels[:, None] * spread)
        score = score_series(Series(scenario.name, commits, measurements), options)
        fails += score.failing
        regressions += score.verdict.value == "REGRESSION"
        detectable.append(score.gate.detectable_effect if score.gate else math.inf)
    fail_rate = fails / series
    met = meets_bound(fail_rate, scenario)
    return GateCell(
        scenario=scenario.name,
        n=n,
        samples=GATE_SAMPLES,
        within_noise=GATE_WITHIN_SD,
        between_noise=GATE_BETWEEN_SD,
        series=series,
        check_fail_rate=fail_rate,
        regression_rate=regressions / series,
        median_detectable_effect=float(np.median(detectable)),
        requirement=f"check fails {requirement_sign(scenario)} {scenario.bound:.0%}",
        met=met,
    )
