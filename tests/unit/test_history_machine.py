"""A machine scored as check scores it: siblings, runner shifts, false discoveries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadkit.common.parallel import process_mapper
from loadkit.history.calibration import machine_simulation as simulated
from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.machine_level import (
    MACHINE_PREFIX,
    loading,
    machine_shifts,
    segment_residuals,
)
from loadkit.history.stats.scoring import (
    ScoringOptions,
    analyse_all,
    benjamini_hochberg,
    commit_order,
    score_machine,
)
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

COMMITS = [f"{i:040x}" for i in range(60)]


def _series(name: str, logs: np.ndarray, samples: int = 1, seed: int = 0, **kw) -> Series:
    generator = np.random.default_rng(seed)
    within = 0.005 * generator.standard_normal((logs.size, samples)) if samples > 1 else 0.0
    values = np.exp(logs[:, None] + within)
    return Series(
        name=name,
        commits=COMMITS[: logs.size],
        measurements=list(values),
        unit="seconds",
        benchmark=f"suite.{name}",
        direction=kw.pop("direction", Direction.LOWER_IS_BETTER),
        **kw,
    )


def _machine(
    count: int, commits: int, scale: float, seed: int, runner: np.ndarray | None = None
) -> list[Series]:
    generator = np.random.default_rng(seed)
    runner = np.zeros(commits) if runner is None else runner
    return [
        _series(f"b{i}", scale * generator.standard_normal(commits) + runner, seed=seed + i)
        for i in range(count)
    ]


def _by_name(scores):
    return {score.series.name: score for score in scores}


# --- false discoveries ------------------------------------------------------------


def test_benjamini_hochberg_steps_up():
    p = [0.001, 0.008, 0.039, 0.041, 0.6]
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True, False, False, False]
    assert benjamini_hochberg(p, 0.2).tolist() == [True, True, True, True, False]
    assert benjamini_hochberg([], 0.05).size == 0


def test_two_hundred_unchanged_series_do_not_fail_the_check():
    scores = score_machine(_machine(200, 10, 0.03, seed=1))
    assert not any(score.failing for score in scores)


# --- borrowing from siblings ------------------------------------------------------


def test_a_ninefold_jump_after_one_reference_commit_fails_beside_quiet_siblings():
    siblings = _machine(50, 30, 0.05, seed=2)
    new = _series("new", np.log(np.array([1.0, 9.0])), seed=3)
    scores = _by_name(score_machine([*siblings, new]))
    gate = scores["new"].gate
    assert gate.verdict is Verdict.REGRESSION and gate.confidence > 0.99
    assert scores["new"].failing and scores["new"].prior_series >= 50


def test_one_reference_commit_without_siblings_is_never_no_change():
    for newest in (1.0, 1.001, 2.0):
        alone = score_machine([_series("alone", np.log(np.array([1.0, newest])), samples=20)])
        assert alone[0].verdict is Verdict.INCONCLUSIVE and not alone[0].failing


def test_siblings_with_one_commit_each_still_tell_real_jumps_from_noise():
    # Every series has a single reference commit: no history anywhere, but the jumps of
    # the many (±5 %) make 3x-14x jumps of a few stand out.
    generator = np.random.default_rng(4)
    series = []
    for index in range(60):
        jump = 0.05 * generator.standard_normal()
        if index < 11:
            jump = math.log(3.0 + index)
        series.append(_series(f"s{index}", np.array([0.0, jump]), seed=index))
    scores = _by_name(score_machine(series))
    failing = {name for name, score in scores.items() if score.failing}
    assert failing == {f"s{index}" for index in range(11)}


def test_one_old_outlier_in_the_reference_does_not_flip_a_blip_verdict():
    generator = np.random.default_rng(5)
    base = 0.01 * generator.standard_normal(40)
    base[-1] = math.log(1.09)  # the newest commit: +9 %
    spoiled = base.copy()
    spoiled[12] = math.log(1.5)  # one wild commit long ago
    siblings = _machine(30, 40, 0.01, seed=6)
    clean = _by_name(score_machine([*siblings, _series("blip", base)]))["blip"]
    other = _by_name(score_machine([*siblings, _series("blip", spoiled)]))["blip"]
    assert clean.verdict is other.verdict
    assert other.gate.confidence == pytest.approx(clean.gate.confidence, abs=0.05)


# --- the runner -------------------------------------------------------------------


def test_machine_shifts_follow_the_runner_and_loadings_what_each_benchmark_feels():
    generator = np.random.default_rng(7)
    runner = np.where(generator.random(50) < 0.3, math.log(1.3), 0.0)
    series, residuals = [], []
    for index in range(20):
        felt = 0.0 if index == 0 else 0.5 + index / 20
        logs = felt * runner + 0.01 * generator.standard_normal(50)
        one = _series(f"b{index}", logs)
        series.append(one)
        residuals.append(segment_residuals(logs, [0]))
    shifts = machine_shifts(series, residuals)["seconds|"]
    slow = [shifts[c] for c, r in zip(COMMITS, runner, strict=False) if r > 0]
    fast = [shifts[c] for c, r in zip(COMMITS, runner, strict=False) if r == 0]
    assert np.median(slow) - np.median(fast) == pytest.approx(math.log(1.3), rel=0.2)
    assert loading(series[0], residuals[0], shifts)[0] < 0.2
    assert loading(series[19], residuals[19], shifts)[0] == pytest.approx(1.45, rel=0.2)


def test_a_slow_runner_at_the_newest_commit_is_not_a_regression_of_each_benchmark():
    generator = np.random.default_rng(8)
    runner = np.where(generator.random(40) < 0.3, math.log(1.3), 0.0)
    runner[-1] = math.log(1.3)
    scores = score_machine(_machine(30, 40, 0.01, seed=9, runner=runner))
    assert not any(score.failing for score in scores)
    machine = [s for s in scores if s.series.name.startswith(MACHINE_PREFIX)]
    assert len(machine) == 1
    benchmarks = [s for s in scores if not s.series.name.startswith(MACHINE_PREFIX)]
    assert sum(s.verdict is Verdict.NO_CHANGE for s in benchmarks) > 20


def test_everything_slowing_on_a_quiet_machine_is_one_regression_of_the_machine():
    runner = np.zeros(40)
    runner[-1] = math.log(1.25)
    scores = score_machine(_machine(30, 40, 0.01, seed=10, runner=runner))
    machine = next(s for s in scores if s.series.name.startswith(MACHINE_PREFIX))
    assert machine.verdict is Verdict.REGRESSION and machine.failing
    assert machine.gate.ratio == pytest.approx(1.25, rel=0.03)
    benchmarks = [s for s in scores if s is not machine]
    assert not any(s.failing for s in benchmarks)
    taken_out = [s.machine_shift for s in benchmarks]
    assert min(taken_out) > 0 and np.median(taken_out) == pytest.approx(math.log(1.25), abs=0.05)


# --- plumbing ---------------------------------------------------------------------


def test_commit_order_merges_histories_that_each_keep_their_order():
    assert commit_order([["a", "c", "d"], ["b", "c"], ["a", "b"]]) == ["a", "b", "c", "d"]


def test_the_first_pass_is_the_same_in_one_process_or_several():
    series = _machine(40, 20, 0.02, seed=11)
    one = analyse_all(series, ScoringOptions(), map_series=process_mapper(1, workers=1))
    two = analyse_all(series, ScoringOptions(), map_series=process_mapper(1, workers=2))
    assert [r.change_points for r in one] == [r.change_points for r in two]
    assert [r.profile.scale for r in one] == [r.profile.scale for r in two]


@pytest.mark.slow
def test_simulated_machines_behave_in_a_small_run():
    by_name = {s.name: s for s in simulated.MACHINE_SCENARIOS}
    step = simulated.run_machine_cell(by_name["step3x_after_1"], series=10, seed=1)
    assert step.check_fail_rate == 1.0 and step.met
    quiet = simulated.run_machine_cell(by_name["levels2_none"], series=10, seed=1)
    assert quiet.check_fail_rate == 0.0 and quiet.met
    rows = simulated.run_calibration(series=60, seed=1)
    assert [row.level for row in rows] == list(simulated.CALIBRATION_LEVELS)
    assert rows[0].verdicts >= rows[-1].verdicts
    suite = simulated.run_suite(suites=2, seed=1)
    assert suite.fail_rate == 0.0 and suite.series_per_suite == simulated.SUITE_SERIES
