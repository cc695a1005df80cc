"""Two-sample judgement and the round plan of ``loadkit compare``, on seeded inputs.

The simulated suite is shaped like loadkit's own: each module's benchmarks scatter from
round to round as the suite's measured A/A figures do (log SD: poll latency 58 %,
delivery 26 %, enqueue 28 %, update processing 20 %, spawn rate 18 %, allocation 13 %,
delivered per second 7 %, WebSocket latency 5 %, the WASM speedups 1-2 %), eight
benchmarks a module, half of them higher-is-better. On top, the host's slow spells: one
in ten of a module's blocks runs 1.2x slower in both of its runs (base and head run back
to back in a block, and a spell that lasted a whole run once made it 18 % slower), and
the judgement pairs each round's two runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.round_plan import (
    MAX_ROUNDS,
    MIN_ROUNDS,
    Side,
    first_round_deviations,
    first_round_scales,
    interleaved_order,
    planned_effects,
    round_runs,
    rounds_for_budget,
    rounds_for_noise,
)
from loadkit.history.stats.two_sample import (
    FILTER_EFFECT,
    Paired,
    compare_pairs,
    detectable_effect,
    median_variance_factor,
)
from loadkit.runs.direction import Direction

MEASURED_AA_SD = {
    "dashboard": (0.58, 0.26, 0.05),
    "swarm": (0.28, 0.20, 0.07),
    "fleet": (0.18, 0.13),
    "wasm": (0.01, 0.02),
}
PER_MODULE = 8
# Share of blocks a slow spell covers, and how much slower it makes both of their runs.
SPELL_SHARE = 0.1
SPELL = math.log(1.2)


def _suite(
    rng: np.random.Generator,
    rounds: int,
    slower: dict[str, float] | None = None,
    tail_df: float | None = None,
    paired: bool = True,
    study_runs: int = 0,
) -> list[Paired]:
    """One simulated comparison; ``slower`` makes a module's head worse by a factor.
    With ``study_runs``, every benchmark's noise is known from an A/A study of that many
    whole runs that met no slow spell: the harder case, where the study knows less noise
    than the comparison meets and only the pairing cancels the spells."""
    items = []
    for module, sds in MEASURED_AA_SD.items():
        spell = SPELL * (rng.random(rounds) < SPELL_SHARE)
        for index in range(PER_MODULE):
            sd = sds[index % len(sds)]
            direction = Direction.HIGHER_IS_BETTER if index % 2 else Direction.LOWER_IS_BETTER

            def draw(
                sd: float = sd, spell: np.ndarray = spell, sign: int = direction.sign
            ) -> np.ndarray:
                if tail_df is None:
                    z = rng.standard_normal(rounds)
                else:
                    z = rng.standard_t(tail_df, rounds) / math.sqrt(tail_df / (tail_df - 2))
                return 100.0 * np.exp(sd * z + sign * spell)

            base, head = draw(), draw()
            factor = (slower or {}).get(module, 1.0)
            head = head * (factor if direction is Direction.LOWER_IS_BETTER else 1.0 / factor)
            pairs = tuple(zip(base, head, strict=True)) if paired else ()
            known = None
            if study_runs:
                study = sd * rng.standard_normal(study_runs)
                known = (float(np.std(study, ddof=1)), float(study_runs - 1))
            items.append(
                Paired(
                    f"{module}.b{index}",
                    tuple(base),
                    tuple(head),
                    direction,
                    module,
                    pairs,
                    known,
                )
            )
    return items


def _false_alarm_share(
    seed: int, rounds: int, suites: int, tail_df: float | None, study_runs: int = 0
) -> float:
    rng = np.random.default_rng(seed)
    failing = 0
    for _ in range(suites):
        results = compare_pairs(_suite(rng, rounds, tail_df=tail_df, study_runs=study_runs))
        failing += any(r.verdict is Verdict.REGRESSION for r in results)
    return failing / suites


@pytest.mark.slow
@pytest.mark.parametrize(("rounds", "tail_df"), [(3, None), (5, None), (3, 4.0)])
def test_comparing_a_commit_with_itself_fails_at_most_one_percent(rounds, tail_df):
    """1000 A/A comparisons of a 32-benchmark suite (32,000 pairs) per case, normal
    and heavy-tailed (t, 4 df) noise: the share of comparisons with any REGRESSION."""
    share = _false_alarm_share(seed=rounds, rounds=rounds, suites=1000, tail_df=tail_df)
    assert share <= 0.01


@pytest.mark.slow
@pytest.mark.parametrize(("rounds", "tail_df"), [(3, None), (5, None), (3, 4.0)])
def test_with_a_studys_noise_a_commit_against_itself_fails_at_most_one_percent(rounds, tail_df):
    """As above, each benchmark's noise known from a five-run A/A study."""
    share = _false_alarm_share(
        seed=100 + rounds, rounds=rounds, suites=1000, tail_df=tail_df, study_runs=5
    )
    assert share <= 0.01


def test_a_small_sample_of_aa_comparisons_stays_quiet():
    """The fast lane's share of the check above: 150 suites, 3 rounds."""
    assert _false_alarm_share(seed=11, rounds=3, suites=150, tail_df=None) <= 0.02


def _wasm_slowdown_found(rounds: int, study_runs: int = 0) -> tuple[float, float]:
    """60 comparisons with every WASM figure 15 % worse: the share of WASM figures
    called REGRESSION, and the share of the other modules' figures."""
    rng = np.random.default_rng(rounds)
    found = other = 0
    suites = 60
    for _ in range(suites):
        items = _suite(rng, rounds, slower={"wasm": 1.15}, study_runs=study_runs)
        results = compare_pairs(items)
        found += sum(r.verdict is Verdict.REGRESSION for r in results if r.name.startswith("wasm"))
        other += sum(
            r.verdict is Verdict.REGRESSION for r in results if not r.name.startswith("wasm")
        )
    return found / (suites * PER_MODULE), other / (suites * 3 * PER_MODULE)


@pytest.mark.parametrize(("rounds", "power"), [(3, 0.95), (5, 0.99)])
def test_a_fifteen_percent_wasm_slowdown_is_found(rounds, power):
    found, other = _wasm_slowdown_found(rounds)
    assert found >= power
    assert other <= 0.01


@pytest.mark.parametrize(("rounds", "power"), [(3, 0.95), (5, 0.99)])
def test_a_studys_noise_finds_a_fifteen_percent_slowdown(rounds, power):
    found, other = _wasm_slowdown_found(rounds, study_runs=5)
    assert found >= power
    assert other <= 0.01


def test_pairing_keeps_a_slow_spell_from_hiding_a_slowdown():
    """The same simulated rounds judged paired and as two unpaired samples: the spells
    widen each side's scatter, but cancel in each round's ratio."""
    found = {True: 0, False: 0}
    for paired in (True, False):
        rng = np.random.default_rng(7)
        for _ in range(100):
            items = _suite(rng, 3, slower={"wasm": 1.15}, paired=paired)
            found[paired] += sum(
                r.verdict is Verdict.REGRESSION
                for r in compare_pairs(items)
                if r.name.startswith("wasm")
            )
    assert found[True] >= 0.95 * 100 * PER_MODULE
    assert found[False] <= 0.9 * found[True]


def test_paired_rounds_use_their_own_ratios():
    LOWER = Direction.LOWER_IS_BETTER
    base = (100.0, 180.0, 101.0)  # a spell in round 2 ...
    head = (115.0, 207.5, 116.0)  # ... on both sides
    quiet = [
        Paired(
            f"q{i}",
            (50.0, 50.5, 49.5),
            (50.1, 49.8, 50.3),
            LOWER,
            pairs=((50.0, 50.1), (50.5, 49.8), (49.5, 50.3)),
        )
        for i in range(8)
    ]
    item = Paired("parse", base, head, LOWER, pairs=tuple(zip(base, head, strict=True)))
    result = compare_pairs([item, *quiet])[0]
    assert result.verdict is Verdict.REGRESSION and result.paired_rounds == 3
    assert result.ratio == pytest.approx(1.15, rel=0.01)
    one_pair = Paired("parse", base, head, LOWER, pairs=((100.0, 115.0),))
    assert compare_pairs([one_pair, *quiet])[0].paired_rounds == 0  # too few: unpaired


def test_improvement_in_a_higher_is_better_benchmark_is_not_a_regression():
    base = (100.0, 101.0, 99.0, 100.5)
    head = tuple(v * 1.3 for v in base)  # 30 % more throughput
    quiet = [
        Paired(
            f"q{i}", (50.0, 50.5, 49.5, 50.2), (50.1, 49.8, 50.3, 50.0), Direction.LOWER_IS_BETTER
        )
        for i in range(8)
    ]
    results = compare_pairs([Paired("rate", base, head, Direction.HIGHER_IS_BETTER), *quiet])
    rate = results[0]
    assert rate.verdict is Verdict.IMPROVEMENT
    assert rate.worse_change < -0.2
    assert rate.ratio_low < rate.ratio < rate.ratio_high
    flipped = compare_pairs([Paired("time", base, head, Direction.LOWER_IS_BETTER), *quiet])[0]
    assert flipped.verdict is Verdict.REGRESSION


def test_a_change_below_min_effect_is_never_a_regression():
    quiet = [
        Paired(f"q{i}", (50.0, 50.05, 49.95), (50.01, 49.98, 50.03), Direction.LOWER_IS_BETTER)
        for i in range(8)
    ]
    small = Paired(
        "small", (100.0, 100.01, 99.99), (103.0, 103.01, 102.99), Direction.LOWER_IS_BETTER
    )
    result = compare_pairs([small, *quiet], min_effect=0.05)[0]
    assert result.p_worse < 1e-6  # surely worse ...
    assert result.verdict is not Verdict.REGRESSION  # ... but by 3 %, under 5 %
    assert compare_pairs([small, *quiet], min_effect=0.01)[0].verdict is Verdict.REGRESSION


def test_one_round_a_side_is_judged_from_the_family_alone():
    rng = np.random.default_rng(5)
    items = [
        Paired(f"b{i}", (float(v),), (float(w),), Direction.LOWER_IS_BETTER, "m")
        for i, (v, w) in enumerate(100 * np.exp(0.02 * rng.standard_normal((10, 2))))
    ]
    results = compare_pairs(items)
    assert all(r.verdict is not Verdict.REGRESSION for r in results)
    assert all(r.noise_df == 0 or math.isfinite(r.noise_scale) for r in results)


def test_every_benchmark_needs_both_sides():
    with pytest.raises(ValueError, match="both commits"):
        compare_pairs([Paired("x", (1.0,), (), Direction.LOWER_IS_BETTER)])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_median_variance_factor_matches_simulation(n):
    draws = np.random.default_rng(n).standard_normal((200_000, n))
    simulated = float(np.var(np.median(draws, axis=1)))
    assert median_variance_factor(n) == pytest.approx(simulated, rel=0.02)


def test_detectable_effect_shrinks_with_rounds_and_grows_with_noise():
    effects = [detectable_effect(0.05, 2.0 * (n - 1), n, n, 30, 0.01) for n in (3, 6, 12)]
    assert effects[0] > effects[1] > effects[2] > 0
    assert detectable_effect(0.2, 10, 6, 6, 30, 0.01) > detectable_effect(0.05, 10, 6, 6, 30, 0.01)
    assert detectable_effect(0.05, 0.0, 3, 3, 30, 0.01) == math.inf
    assert detectable_effect(0.0001, 10, 6, 6, 30, 0.01, min_effect=0.05) == 0.05


def test_interleaved_order_mirrors_every_pair():
    order = interleaved_order(4)
    b, h = Side.BASE, Side.HEAD
    assert order == [b, h, h, b, b, h, h, b]
    # A linear drift d*t adds the same total to both sides over each two rounds.
    drift = {side: sum(t for t, s in enumerate(order) if s is side) for side in Side}
    assert drift[b] == drift[h]


def test_round_runs_pair_each_block_and_mirror_rounds():
    b, h = Side.BASE, Side.HEAD
    first, second = round_runs(1, 3), round_runs(2, 3)
    assert first == [(0, b), (0, h), (1, h), (1, b), (2, b), (2, h)]
    assert second == [(0, h), (0, b), (1, b), (1, h), (2, h), (2, b)]
    # Over two rounds, each block's base and head runs sit at the same mean time.
    for block in range(3):
        order = [(r, s) for r, (k, s) in enumerate(first + second) if k == block]
        assert sum(t for t, s in order if s is b) == sum(t for t, s in order if s is h)
    with pytest.raises(ValueError):
        round_runs(0, 3)


def test_budget_plan_counts_builds_and_keeps_a_minimum():
    plan = rounds_for_budget(budget_s=900, spent_s=300, round_s=100, done=1)
    assert plan.rounds == 7 and not plan.over_budget and plan.expected_s == 900
    tight = rounds_for_budget(budget_s=200, spent_s=300, round_s=100, done=1)
    assert tight.rounds == MIN_ROUNDS and tight.over_budget
    capped = rounds_for_budget(budget_s=1e9, spent_s=10, round_s=1, done=1, max_rounds=12)
    assert capped.rounds == 12
    with pytest.raises(ValueError):
        rounds_for_budget(budget_s=100, spent_s=0, round_s=0, done=0)


def test_first_round_scales_pool_families_and_plan_effects():
    rng = np.random.default_rng(3)
    deviations = {f"w{i}": float(0.02 * math.sqrt(2) * rng.standard_normal()) for i in range(12)}
    deviations |= {f"d{i}": float(0.3 * math.sqrt(2) * rng.standard_normal()) for i in range(12)}
    families = {name: name[0] for name in deviations}
    scales = first_round_scales(deviations, families)
    assert 0.008 < scales["w0"][0] < 0.05
    assert 0.12 < scales["d0"][0] < 0.8
    assert scales["w0"][1] == pytest.approx(0.37 * 11)  # what a median of 12 is worth
    effects = planned_effects(scales, rounds=6, false_discovery=0.01, min_effect=0.05)
    assert effects["w0"] == pytest.approx(0.05) or effects["w0"] < 0.15
    assert effects["d0"] > effects["w0"]


def test_rounds_for_noise_stops_when_the_steady_benchmarks_see_the_target():
    steady = {f"w{i}": (0.01, 4.0) for i in range(10)}
    wider = {f"w{i}": (0.02, 4.0) for i in range(10)}
    few = rounds_for_noise(steady, 0.05, 0.01, 0.05)
    more = rounds_for_noise(wider, 0.05, 0.01, 0.05)
    assert MIN_ROUNDS <= few < more <= MAX_ROUNDS
    # At the chosen rounds each of them sees the target; one round fewer, not all do.
    assert max(planned_effects(wider, more, 0.01, 0.05).values()) <= 0.05
    if more > MIN_ROUNDS:
        assert max(planned_effects(wider, more - 1, 0.01, 0.05).values()) > 0.05
    # A benchmark no number of rounds can steady does not decide the count.
    hopeless = wider | {"poll": (2.0, 4.0)}
    assert rounds_for_noise(hopeless, 0.05, 0.01, 0.05) < MAX_ROUNDS
    # Nothing can reach the target: the budget alone decides.
    assert rounds_for_noise({"poll": (2.0, 4.0)}, 0.05, 0.01, 0.05) == MAX_ROUNDS


def test_first_round_deviations_skip_values_without_a_ratio():
    base = {"rate": [100.0], "leaked": [0.0], "lost": [3.0], "gone": [1.0]}
    head = {"rate": [110.0], "leaked": [0.0], "lost": [0.0], "new": [1.0]}
    deviations = first_round_deviations(base, head)
    assert deviations.keys() == {"rate"}
    assert deviations["rate"] == pytest.approx(math.log(1.1))


def test_benchmarks_too_noisy_to_judge_do_not_raise_the_others_bar():
    LOWER = Direction.LOWER_IS_BETTER
    rng = np.random.default_rng(21)

    def rounds(sd: float, factor: float = 1.0) -> tuple[float, ...]:
        return tuple(100.0 * factor * np.exp(sd * rng.standard_normal(3)))

    quiet = [
        Paired(f"wasm.b{i}", rounds(0.03), rounds(0.03, 1.25 if i < 3 else 1.0), LOWER, "wasm")
        for i in range(10)
    ]
    hopeless = [
        Paired(f"poll.b{i}", rounds(1.5), rounds(1.5, 3.0 if i == 0 else 1.0), LOWER, "poll")
        for i in range(150)
    ]
    alone = compare_pairs(quiet)
    crowded = compare_pairs(quiet + hopeless)
    # The quiet benchmarks are judged exactly as if the hopeless ones were not there.
    for a, b in zip(alone, crowded[: len(quiet)], strict=True):
        assert (a.verdict, a.detectable_effect) == (b.verdict, pytest.approx(b.detectable_effect))
    assert [r.verdict for r in alone[:3]] == [Verdict.REGRESSION] * 3
    # A benchmark whose noise hides a tenfold change is never called anything, even at 3x.
    assert crowded[len(quiet)].verdict is Verdict.INCONCLUSIVE
    assert all(r.detectable_effect > FILTER_EFFECT for r in crowded[len(quiet) :])
