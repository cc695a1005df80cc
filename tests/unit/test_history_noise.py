"""Noise priors, noise laws and the verdict posterior, on pure seeded series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from loadkit.history.stats import laws
from loadkit.history.stats.noise import (
    ChangeLaw,
    NoiseProfile,
    _trigamma_inverse,
    change_law,
    cross_section_prior,
    fit_prior,
    moderated_scale,
    robust_scale,
    series_profile,
)
from loadkit.history.stats.posterior import posterior


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- own scatter ------------------------------------------------------------------


def test_robust_scale_matches_the_sd_on_normal_noise_and_shrugs_off_an_outlier():
    draws = 0.02 * rng(1).standard_normal(400)
    clean = robust_scale(draws - np.median(draws), draws.size - 1)
    assert clean == pytest.approx(0.02, rel=0.1)
    spoiled = draws.copy()
    spoiled[7] = 2.0  # one commit 100 SDs off
    assert robust_scale(spoiled - np.median(spoiled), spoiled.size - 1) < 1.1 * clean


def test_a_profile_pools_segments_signs_residuals_and_counts_changes():
    levels = np.log(np.array([1.0, 1.1, 1.0, 1.1, 2.0, 2.2, 2.0, 2.2]))
    profile = series_profile(levels, [4], sign=-1, change_sizes=[math.log(2.0)])
    assert profile.df == 6 and profile.changes == 1 and profile.transitions == 7
    assert profile.residuals.size == 8
    # higher is better: a commit above its segment's level is better, so negative
    assert profile.residuals[1] < 0 < profile.residuals[0]
    assert series_profile(levels[:1], [], 1).df == 0


# --- the family prior -------------------------------------------------------------


def test_trigamma_inverse_inverts_trigamma():
    for value in (1e-5, 0.05, 0.318, 1.0, 5.0, 1e4):
        assert float(special.polygamma(1, _trigamma_inverse(value))) == pytest.approx(value)


def _profiles(scales: np.ndarray, commits: int, seed: int) -> list[NoiseProfile]:
    generator = rng(seed)
    return [series_profile(scale * generator.standard_normal(commits), [], 1) for scale in scales]


def test_a_family_sharing_one_scale_gives_a_strong_prior_at_that_scale():
    prior = fit_prior(_profiles(np.full(60, 0.03), 30, seed=2))
    assert prior is not None
    assert prior.scale == pytest.approx(0.03, rel=0.1)
    assert prior.df > 50


def test_a_family_of_different_scales_gives_a_weak_prior():
    scales = 0.03 * np.exp(0.5 * rng(3).standard_normal(60))
    prior = fit_prior(_profiles(scales, 30, seed=4))
    assert prior is not None and 1.0 < prior.df < 15.0
    # log σ² spread by 2·0.5 has variance 1 = trigamma(ν/2): ν ≈ 2.85
    assert prior.df == pytest.approx(2.0 * _trigamma_inverse(1.0), rel=0.4)


def test_too_few_siblings_make_no_prior():
    assert fit_prior(_profiles(np.full(2, 0.03), 30, seed=5)) is None


def test_moderation_weighs_own_and_prior_by_degrees_of_freedom():
    prior = fit_prior(_profiles(np.full(60, 0.05), 30, seed=6))
    assert prior is not None
    short = series_profile(np.log([1.0, 1.001, 0.999]), [], 1)  # 2 df at about 0.1 %
    scale, df = moderated_scale(short, prior)
    assert df == pytest.approx(prior.df + 2)
    assert scale > 0.04  # two quiet commits do not outweigh fifty siblings
    assert moderated_scale(short, None) == (short.scale, 2.0)


def test_the_prior_pools_tails_and_the_change_rate():
    profiles = _profiles(np.full(20, 0.02), 40, seed=7)
    profiles = [
        NoiseProfile(p.scale, p.df, p.residuals, changes=1, transitions=39) for p in profiles
    ]
    prior = fit_prior(profiles)
    assert prior is not None
    assert prior.tail.size == sum(p.residuals.size for p in profiles)
    assert np.all(np.diff(prior.tail) >= 0)
    expected = change_law(profiles).rate
    assert prior.change.rate == pytest.approx(expected)
    assert 20 / 780 < expected < 0.1


def test_a_cross_section_stands_in_when_no_history_has_scatter():
    # fifty siblings each with one reference commit: their jumps at this commit,
    # a few real, most noise of about 5 %
    jumps = 0.05 * math.sqrt(2) * rng(8).standard_normal(50)
    jumps[:5] = math.log(5.0)
    prior = cross_section_prior(jumps, reference_factor=2.0)
    assert prior is not None
    assert prior.scale == pytest.approx(0.05, rel=0.35)
    assert prior.change.rate == 0.5  # nothing known of how often commits change things
    assert prior.tail.size == 0


# --- noise laws -------------------------------------------------------------------


def test_a_big_pool_keeps_its_shape_and_extends_its_tails():
    values = np.sort(
        np.concatenate([rng(9).standard_normal(1800), 4 + rng(10).standard_normal(200)])
    )
    law = laws.EmpiricalLaw(values)
    z = np.linspace(-60, 60, 120001)
    assert float(np.trapezoid(law.pdf(z), z)) == pytest.approx(1.0, abs=0.01)
    assert law.cdf(np.array([0.0]))[0] == pytest.approx(np.mean(values <= 0), abs=0.03)
    # the second mode (a slower runner) is a bump, not a valley
    assert law.pdf(np.array([4.0]))[0] > law.pdf(np.array([2.6]))[0]
    # beyond the largest residual the density decays but stays positive
    beyond = law.pdf(np.array([values[-1] + 1.0, values[-1] + 5.0]))
    assert 0 < beyond[1] < beyond[0]


def test_a_small_pool_admits_heavy_tails_only_on_evidence():
    normal = laws.fitted_two_piece(np.sort(rng(11).standard_normal(60)))
    assert normal.upper.df == normal.lower.df == laws._MAX_FITTED_DF
    heavy = np.sort(rng(12).standard_t(2, 200))
    fitted = laws.fitted_two_piece(heavy)
    assert fitted.upper.df <= 4 and fitted.lower.df <= 4
    z = np.linspace(-200, 200, 400001)
    assert float(np.trapezoid(fitted.pdf(z), z)) == pytest.approx(1.0, abs=0.01)


def test_the_difference_law_widens_with_a_short_reference():
    base = laws.StudentLaw(200.0)
    spreads = []
    for references in (1, 2, 3, 9):
        law = laws.reference_difference(base, references, 30.0)
        assert law.cdf(np.array([30.0]))[0] == pytest.approx(1.0, abs=1e-6)
        spreads.append(law.quantile(0.975))
    assert spreads == sorted(spreads, reverse=True)
    assert spreads[0] == pytest.approx(1.96 * math.sqrt(2), rel=0.03)


def test_a_reference_on_a_slow_runner_makes_a_drop_ordinary():
    # A third of commits land 5 units slow: with one reference commit, the newest
    # landing 5 units below it happens a fifth of the time, so it is no improvement.
    values = np.sort(
        np.concatenate([rng(13).standard_normal(700), 5 + rng(14).standard_normal(350)])
    )
    law = laws.reference_difference(laws.EmpiricalLaw(values), 1, 40.0)
    assert law.cdf(np.array([-4.0]))[0] > 0.15
    change = ChangeLaw(rate=0.05)
    drop = posterior(-0.05, 0.01, law, change, math.log1p(0.05))
    assert drop.better < 0.8


def test_a_scale_mixture_has_heavier_tails_than_its_base():
    base = laws.StudentLaw(200.0)
    mixed = laws.ScaleMixedLaw(base, 3.0)
    far = np.array([5.0])
    assert mixed.pdf(far)[0] > 10 * base.pdf(far)[0]
    assert mixed.cdf(np.array([0.0]))[0] == pytest.approx(0.5)


# --- the posterior ----------------------------------------------------------------


def test_a_commit_where_its_predecessors_sat_is_no_change_and_a_far_one_a_regression():
    law = laws.StudentLaw(50.0)
    change = ChangeLaw(rate=0.05)
    margin = math.log1p(0.05)
    same = posterior(0.001, 0.01, law, change, margin)
    assert same.same > 0.95 and same.worse < 0.05
    far = posterior(0.3, 0.01, law, change, margin)
    assert far.worse > 0.999
    huge = posterior(math.log(100.0), 0.01, law, change, margin)
    assert huge.worse > 0.999
    down = posterior(-0.3, 0.01, law, change, margin)
    assert down.better > 0.999


def test_rare_changes_ask_more_evidence_of_a_regression():
    law = laws.StudentLaw(50.0)
    margin = math.log1p(0.05)
    common = posterior(0.04, 0.01, law, ChangeLaw(rate=0.3), margin).worse
    rare = posterior(0.04, 0.01, law, ChangeLaw(rate=0.003), margin).worse
    assert common > 0.9 > rare


def test_posteriors_are_probabilities():
    law = laws.StudentLaw(5.0)
    for shift in (-2.0, -0.1, 0.0, 0.02, 0.5, 5.0):
        belief = posterior(shift, 0.03, law, ChangeLaw(rate=0.1), math.log1p(0.05))
        assert 0.0 <= belief.better <= 1.0 and 0.0 <= belief.worse <= 1.0
        assert belief.better + belief.worse <= 1.0 + 1e-9
        assert 0.0 <= belief.same <= 1.0


def test_tail_probabilities_follow_the_pool_then_the_fitted_decay():
    values = np.sort(rng(15).exponential(1.0, 1000))
    fitted = laws.fit_exceedances(values)
    assert fitted is not None
    assert laws.upper_tail(values, fitted, 1.0) == pytest.approx(math.exp(-1.0), abs=0.05)
    far = values[-1] + 3.0
    assert 0 < laws.upper_tail(values, fitted, far) < 1.0 / 1001
    assert stats.expon.sf(1.0) == pytest.approx(math.exp(-1.0))
