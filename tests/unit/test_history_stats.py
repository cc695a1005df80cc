"""Pure statistics of loadkit.history: fast, no I/O, known answers from constructed data."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from loadkit.history.stats import changepoints, drift
from loadkit.history.stats.confidence import confidence_from_p, p_for_confidence
from loadkit.history.stats.gate import GateNoise, Verdict, run_gate
from loadkit.history.stats.noise import NoisePrior
from loadkit.runs.direction import Direction, infer_direction

LOWER = Direction.LOWER_IS_BETTER
HIGHER = Direction.HIGHER_IS_BETTER


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- confidence -------------------------------------------------------------------


def test_confidence_is_the_sellke_bayarri_berger_bound():
    assert confidence_from_p(0.05) == pytest.approx(1 / (1 - math.e * 0.05 * math.log(0.05)))
    assert confidence_from_p(0.05) < 0.72  # p = 0.05 is weak evidence
    assert confidence_from_p(0.5) == 0.5 and confidence_from_p(0.0) == 1.0
    assert confidence_from_p(math.nan) == 0.0


@given(st.floats(min_value=1e-12, max_value=0.36))
def test_confidence_decreases_with_p(p):
    assert 0.5 <= confidence_from_p(p) <= 1.0
    assert confidence_from_p(p) >= confidence_from_p(min(p * 1.5, 0.36))


@given(st.floats(min_value=0.51, max_value=0.999))
def test_p_for_confidence_inverts_the_calibration(level):
    assert confidence_from_p(p_for_confidence(level)) == pytest.approx(level, abs=1e-9)


def test_p_for_confidence_rejects_levels_outside_the_open_interval():
    for level in (0.5, 1.0, 0.2):
        with pytest.raises(ValueError):
            p_for_confidence(level)


# --- direction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "unit", "declared", "expected"),
    [
        ("bench.Fleet.time_spawn", "seconds", None, LOWER),
        ("bench.Fleet.peakmem_spawn", "bytes", None, LOWER),
        ("bench.Swarm.track_delivered_per_s", "msg/s", None, HIGHER),
        ("bench.Swarm.track_throughput", "unit", None, HIGHER),
        ("bench.Swarm.track_latency_p95_ms", "ms", None, LOWER),
        ("bench.Swarm.track_xadd", "ops/s", None, HIGHER),
        ("bench.Swarm.track_drops", "count", None, LOWER),
        ("bench.Swarm.track_hits", "count", "higher_is_better", HIGHER),
        ("bench.Fleet.time_spawn", "seconds", "lower", LOWER),
        ("bench.X.track_loops", "count", None, LOWER),
        # A ratio is only "higher is better" when it is a share of something good.
        ("bench.Swarm.track_recovery_ratio", "ratio", None, HIGHER),
        ("bench.Dash.track_reconnect_ratio", "ratio", None, HIGHER),
        ("bench.Wasm.track_parallel_scaling_ratio", "x", None, HIGHER),
        ("bench.Swarm.track_delivered_share_of_ceiling", "ratio", None, HIGHER),
        ("bench.Wasm.track_equivalent", "bool", None, HIGHER),
        ("bench.Fleet.track_overshoot_ratio", "ratio", None, LOWER),
        ("bench.Fleet.track_residual_ratio", "ratio", None, LOWER),
        ("bench.Swarm.track_recovery_redis_s", "s", None, LOWER),
    ],
)
def test_direction_comes_from_declaration_then_prefix_unit_and_name(name, unit, declared, expected):
    assert infer_direction(name, unit, declared) is expected


def test_direction_sign():
    assert LOWER.sign == 1 and HIGHER.sign == -1


# --- change points ----------------------------------------------------------------


def _with_step(n: int, at: int, size: float, seed: int, sd: float = 0.02) -> np.ndarray:
    values = 1.0 + sd * rng(seed).standard_normal(n)
    values[at:] *= 1.0 + size
    return values


def test_scan_statistic_peaks_at_the_step():
    values = np.log(_with_step(40, 30, 0.2, seed=1))
    scan = changepoints.scan_statistics(values[None, :], 3)[0]
    assert 3 + int(np.argmax(np.abs(scan))) == 30


def test_a_clear_step_is_found_at_its_commit_with_size_and_interval():
    values = _with_step(40, 25, 0.10, seed=2)
    alpha = p_for_confidence(0.95)
    found = changepoints.find_change_points(np.log(values), alpha, rng(), 3)
    assert [index for index, _, _ in found] == [25]
    (cp,) = changepoints.describe_change_points(values, found, 0.95, rng())
    assert cp.ratio_low < cp.ratio < cp.ratio_high
    assert cp.ratio_low < 1.10 < cp.ratio_high
    assert cp.confidence >= 0.95


def test_a_staircase_is_found_step_by_step():
    values = _with_step(60, 20, 0.15, seed=3)
    values[40:] *= 1.15
    found = changepoints.find_change_points(np.log(values), p_for_confidence(0.95), rng(), 3)
    assert [index for index, _, _ in found] == [20, 40]


@pytest.mark.parametrize("seed", range(5))
def test_a_regression_fixed_later_is_found_at_both_ends(seed):
    values = 1.0 + 0.02 * rng(seed).standard_normal(60)
    values[20:40] *= 1.15
    found = changepoints.find_change_points(np.log(values), p_for_confidence(0.95), rng(), 3)
    assert [index for index, _, _ in found] == [20, 40]


def test_one_noisy_commit_is_not_a_step():
    values = 1.0 + 0.01 * rng(4).standard_normal(40)
    values[20] *= 1.5
    values[-1] *= 1.5
    assert changepoints.find_change_points(np.log(values), 0.05, rng(), 3) == []


def test_short_or_flat_series_have_no_change_points():
    assert changepoints.find_change_points(np.zeros(5), 0.5, rng(), 3) == []
    assert changepoints.find_change_points(np.zeros(40), 0.5, rng(), 3) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=6, max_size=30), st.integers(1, 4))
def test_change_points_respect_the_minimum_segment(values, min_size):
    arr = np.log(np.array(values))
    found = changepoints.find_change_points(arr, 0.5, rng(), min_size)
    bounds = [0, *[index for index, _, _ in found], arr.size]
    assert all(b - a >= min_size for a, b in itertools.pairwise(bounds))
    assert all(0 < p <= 1 for _, p, _ in found)


def test_autocorrelation_estimate_sees_ar1_and_not_white_noise():
    generator = rng(5)
    white = generator.standard_normal(200)
    ar = np.empty(200)
    ar[0] = 0.0
    for i in range(1, 200):
        ar[i] = 0.7 * ar[i - 1] + generator.standard_normal()
    assert changepoints.lag1_autocorrelation(white) == 0.0
    assert 0.55 < changepoints.lag1_autocorrelation(ar) < 0.85
    assert changepoints.long_run_factor(0.6) == pytest.approx(4.0)


def test_permutation_p_value_is_exact_enough_on_white_noise():
    # Under the null, P(p <= 0.1) should be about 0.1.
    generator = rng(6)
    hits = 0
    for _ in range(200):
        values = generator.standard_normal(30)
        scan = changepoints.scan_statistics(values[None, :], 3)[0]
        p = changepoints.permutation_p_value(values, float(np.abs(scan).max()), 3, 0.1, generator)
        hits += p <= 0.1
    assert 8 <= hits <= 35


# --- drift ------------------------------------------------------------------------


def test_mann_kendall_s_counts_ordered_pairs():
    assert drift.mann_kendall_s(np.arange(5.0)) == 10
    assert drift.mann_kendall_s(np.arange(5.0)[::-1]) == -10
    assert drift.mann_kendall_variance(np.arange(10.0)) == pytest.approx(10 * 9 * 25 / 18)


def test_hamed_rao_factor_grows_with_autocorrelation():
    assert drift.hamed_rao_factor(40, 0.0) == 1.0
    assert 1.0 < drift.hamed_rao_factor(40, 0.3) < drift.hamed_rao_factor(40, 0.6)


def test_theil_sen_recovers_a_trend_with_an_interval():
    n = 40
    values = np.exp(0.0025 * np.arange(n)) * (1.0 + 0.002 * rng(7).standard_normal(n))
    result = drift.estimate_drift(values, 0.95)
    assert result is not None
    assert result.pct_low < 0.25 < result.pct_high
    assert result.pct_per_commit == pytest.approx(0.25, abs=0.05)
    assert result.confidence > 0.99


def test_drift_uses_only_the_window_and_needs_five_commits():
    values = np.concatenate([np.linspace(1.0, 2.0, 50), np.ones(10)])
    assert drift.estimate_drift(values, 0.95, window=10).pct_per_commit == 0.0
    assert drift.estimate_drift(np.ones(4), 0.95) is None


def test_no_drift_in_white_noise():
    result = drift.estimate_drift(1.0 + 0.02 * rng(8).standard_normal(40), 0.95)
    assert result is not None and result.confidence < 0.95
    assert result.pct_low < 0.0 < result.pct_high


# --- gate -------------------------------------------------------------------------


def _commits(level: float, count: int, samples: int, seed: int, sd: float = 0.01):
    generator = rng(seed)
    return [
        level
        * (1 + sd * generator.standard_normal(samples))
        * (1 + 0.002 * generator.standard_normal())
        for _ in range(count)
    ]


def test_gate_flags_a_slower_commit_as_regression_with_samples():
    reference = _commits(1.0, 6, 10, seed=9)
    (newest,) = _commits(1.3, 1, 10, seed=10)
    result = run_gate(reference, newest, LOWER, 0.95, 0.05)
    assert result.verdict is Verdict.REGRESSION
    assert result.ratio_low < result.ratio < result.ratio_high
    assert 1.25 < result.ratio < 1.35
    assert result.confidence >= 0.95 and result.used_samples
    assert result.detectable_effect < 0.3


def test_gate_direction_turns_a_rise_into_an_improvement():
    reference = _commits(1000.0, 6, 10, seed=11)
    (newest,) = _commits(1300.0, 1, 10, seed=12)
    assert run_gate(reference, newest, HIGHER, 0.95, 0.05).verdict is Verdict.IMPROVEMENT
    (lower,) = _commits(700.0, 1, 10, seed=13)
    assert run_gate(reference, lower, HIGHER, 0.95, 0.05).verdict is Verdict.REGRESSION


def test_gate_says_no_change_when_the_interval_is_inside_the_margin():
    reference = _commits(1.0, 10, 10, seed=14)
    (newest,) = _commits(1.0, 1, 10, seed=15)
    result = run_gate(reference, newest, LOWER, 0.95, 0.05)
    assert result.verdict is Verdict.NO_CHANGE
    assert result.ratio_low > 0.95 and result.ratio_high < 1.05


def test_gate_is_inconclusive_when_noise_hides_the_margin():
    reference = _commits(1.0, 3, 1, seed=16, sd=0.2)
    (newest,) = _commits(1.1, 1, 1, seed=17, sd=0.2)
    result = run_gate(reference, newest, LOWER, 0.95, 0.05)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.detectable_effect > 0.05


def _pool(residuals: np.ndarray) -> NoisePrior:
    return NoisePrior(scale=1.0, df=50.0, tail=np.sort(residuals), series=10)


def test_a_family_that_often_lands_high_keeps_such_a_jump_from_being_called():
    # A tenth of this family's commits land 4 SDs high (a slower runner): a newest
    # commit 4 SDs up is ordinary there, while a normal family would call it.
    generator = rng(18)
    quiet = generator.standard_normal(2000)
    lumpy = np.where(generator.random(2000) < 0.1, 4.0, 0.0) + generator.standard_normal(2000)
    reference = [np.array([v]) for v in 1.0 + 0.01 * generator.standard_normal(30)]
    newest = np.array([1.0 * math.exp(0.045)])
    normal = run_gate(reference, newest, LOWER, 0.95, 0.05, GateNoise(0.01, 50.0, _pool(quiet)))
    mixed = run_gate(reference, newest, LOWER, 0.95, 0.05, GateNoise(0.01, 50.0, _pool(lumpy)))
    assert normal.verdict is Verdict.REGRESSION
    assert mixed.verdict is not Verdict.REGRESSION and mixed.p_worse > 0.02
    # Beyond anything the family has seen, the t tail decides: a 9x jump is called.
    huge = run_gate(
        reference, np.array([9.0]), LOWER, 0.95, 0.05, GateNoise(0.01, 50.0, _pool(lumpy))
    )
    assert huge.verdict is Verdict.REGRESSION and huge.confidence > 0.999
    assert mixed.detectable_effect > normal.detectable_effect


def test_the_empirical_tail_is_read_per_direction():
    # Commits that land low (a faster runner) say nothing about landing high.
    generator = rng(22)
    low_only = np.where(generator.random(2000) < 0.2, -5.0, 0.0) + generator.standard_normal(2000)
    reference = [np.array([1.0])] * 10
    noise = GateNoise(0.01, 50.0, _pool(low_only))
    up = run_gate(reference, np.array([math.exp(0.08)]), LOWER, 0.95, 0.05, noise)
    down = run_gate(reference, np.array([math.exp(-0.05)]), LOWER, 0.95, 0.05, noise)
    assert up.verdict is Verdict.REGRESSION
    assert down.verdict is not Verdict.IMPROVEMENT


def test_without_a_pool_the_t_tail_decides():
    levels = 1.0 + 0.01 * stats.norm.ppf((np.arange(30) + 0.5) / 30)
    reference = [np.array([v]) for v in levels]
    result = run_gate(reference, np.array([1.06]), LOWER, 0.95, 0.05)
    assert result.verdict is Verdict.REGRESSION and result.detectable_effect < 0.07


def test_one_outlier_in_the_reference_does_not_flip_the_verdict():
    generator = rng(23)
    levels = 1.0 + 0.01 * generator.standard_normal(30)
    newest = np.array([1.09])
    clean = run_gate([np.array([v]) for v in levels], newest, LOWER, 0.95, 0.05)
    levels[3] = 1.5  # one wild commit long ago
    spoiled = run_gate([np.array([v]) for v in levels], newest, LOWER, 0.95, 0.05)
    assert clean.verdict is spoiled.verdict is Verdict.REGRESSION
    assert spoiled.detectable_effect < 1.5 * clean.detectable_effect


def test_gate_needs_a_reference():
    with pytest.raises(ValueError):
        run_gate([], np.array([1.0]), LOWER, 0.95, 0.05)


def test_one_reference_commit_alone_knows_nothing_of_between_commit_scatter():
    # Twenty tight samples each say how repeatable one run is, not how far the next
    # run on another day lands: neither a verdict nor NO_CHANGE at full confidence.
    reference = _commits(1.0, 1, 20, seed=19)
    for level in (1.0, 2.0):
        (newest,) = _commits(level, 1, 20, seed=20)
        result = run_gate(reference, newest, LOWER, 0.95, 0.05)
        assert result.verdict is Verdict.INCONCLUSIVE and math.isinf(result.detectable_effect)
    single = run_gate([np.array([1.0])], np.array([2.0]), LOWER, 0.95, 0.05)
    assert single.verdict is Verdict.INCONCLUSIVE and math.isinf(single.detectable_effect)


def test_one_reference_commit_with_a_family_prior_calls_a_big_jump():
    # Siblings that move ±5 % between commits make a 9x jump a confident regression and
    # a 2 % wiggle no confident anything.
    noise = GateNoise(0.05, 40.0)
    jump = run_gate([np.array([1.0])], np.array([9.0]), LOWER, 0.95, 0.05, noise)
    assert jump.verdict is Verdict.REGRESSION and jump.confidence > 0.99
    wiggle = run_gate([np.array([1.0])], np.array([1.02]), LOWER, 0.95, 0.05, noise)
    assert wiggle.verdict is Verdict.INCONCLUSIVE and wiggle.confidence < 0.95


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 2.0), st.integers(0, 10_000))
def test_gate_ratio_interval_brackets_the_estimate(level, seed):
    reference = _commits(1.0, 5, 7, seed=seed)
    (newest,) = _commits(level, 1, 7, seed=seed + 1)
    result = run_gate(reference, newest, LOWER, 0.9, 0.05)
    assert result.ratio_low <= result.ratio * 1.05 and result.ratio_high >= result.ratio * 0.95
    assert 0.0 <= result.confidence <= 1.0
    assert result.verdict in Verdict


@given(st.floats(0.1, 6.0), st.integers(8, 200), st.floats(1.0, 19.0))
def test_shrink_and_unshrink_are_inverse(z, n, factor):
    z = min(z, math.sqrt(n) * 0.999)
    shrunk = changepoints._shrink(z, n, factor)
    assert shrunk <= z + 1e-12
    assert changepoints._unshrink(shrunk, n, factor) == pytest.approx(z, rel=1e-6)
