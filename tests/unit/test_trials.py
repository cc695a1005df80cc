"""Repeated trials, the A/A spread and the suite's declarations, on plain numbers.

The trial machinery is tried on a fake workload whose noise is known (log-normal with a
set log standard deviation, seeded): one trial per run must show that spread, the
median of nine the spread the median's efficiency predicts.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO

from loadkit.asvsuite.track import discover, track
from loadkit.history.stats.spread import band, detectable_effect, log_spread, spread_row, verdict
from loadkit.runs import declarations
from loadkit.runs.declarations import (
    HEADLINE,
    HEADLINES,
    HIGHER,
    INFORMATIONAL,
    LOWER,
    Tracked,
    read_sidecar,
    write_sidecar,
)
from loadkit.runs.trials import Measured, TrialPlan, combine, run_trials, run_trials_sync

SIGMA = 0.05  # the fake workload's log standard deviation per trial
LEVEL = 100.0
COLD = 10.0  # how much slower the fake's first trial is


class FakeWorkload:
    """A measurement with known noise: each trial's figure is LEVEL * exp(SIGMA * z),
    except the first of a run, which is COLD times slower (caches, pools); it also
    reports a leak count that is 1 in the warm-up trial only when ``leaky``."""

    def __init__(self, seed: int, leaky: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.leaky = leaky

    async def measure(self, index: int) -> dict[str, float]:
        await asyncio.sleep(0)
        value = LEVEL * math.exp(SIGMA * self.rng.standard_normal())
        cold = COLD if index == 0 else 1.0
        return {"rate_per_s": value / cold, "leaked": float(self.leaky and index == 0)}


def _runs(kept: int, runs: int = 400, seed: int = 7) -> list[float]:
    """``runs`` runs of the fake workload, each the median of ``kept`` trials after one
    warm-up."""
    fake = FakeWorkload(seed)
    plan = TrialPlan(kept=kept, warmup=1)
    return [
        asyncio.run(run_trials(fake.measure, plan, exact=("leaked",))).metrics["rate_per_s"]
        for _ in range(runs)
    ]


def test_one_trial_a_run_shows_the_workloads_own_spread():
    assert log_spread(_runs(kept=1)) == pytest.approx(SIGMA, rel=0.1)


def test_the_median_of_nine_trials_cuts_the_spread_as_the_medians_efficiency_says():
    # The median of n normal draws has about sqrt(pi / 2) / sqrt(n) of one draw's spread
    # (a little more at small n): 0.42 for nine.
    ratio = log_spread(_runs(kept=9)) / SIGMA
    assert 0.33 < ratio < 0.5


def test_the_warm_up_trial_is_never_a_sample_and_leaks_in_it_still_count():
    fake = FakeWorkload(seed=3, leaky=True)
    result = asyncio.run(run_trials(fake.measure, TrialPlan(kept=5), exact=("leaked",)))
    samples = result.samples["rate_per_s"]
    assert len(samples) == 5 and min(samples) > LEVEL / 2  # the cold trial is not among them
    assert result.metrics["rate_per_s"] == pytest.approx(float(np.median(samples)))
    assert result.metrics["leaked"] == 1.0 and "leaked" not in result.samples


def test_a_failed_trial_fails_the_figure_instead_of_being_outvoted():
    trials = [{"p99_ms": 5.0}, {"p99_ms": 4.0}, {"p99_ms": math.nan}, {"p99_ms": 6.0}]
    assert math.isnan(combine(trials, warmup=1).metrics["p99_ms"])


def test_a_sparse_figure_leaves_out_the_trials_that_did_not_measure_it():
    trials = [{"p95_ms": 9.0}, {"p95_ms": 4.0}, {"p95_ms": math.nan}, {"p95_ms": 6.0}]
    result = combine(trials, warmup=1, sparse=("p95_ms",))
    assert result.metrics["p95_ms"] == 5.0 and result.samples["p95_ms"] == [4.0, 6.0]
    nothing = combine([{"p95_ms": math.nan}] * 2, warmup=0, sparse=("p95_ms",))
    assert math.isnan(nothing.metrics["p95_ms"])


def test_trials_that_report_different_metrics_and_bad_plans_are_refused():
    with pytest.raises(ValueError, match="other metrics"):
        combine([{"a": 1.0}, {"b": 1.0}], warmup=0)
    with pytest.raises(ValueError, match="leave none"):
        combine([{"a": 1.0}], warmup=1)
    with pytest.raises(ValueError):
        TrialPlan(kept=0)
    with pytest.raises(ValueError):
        TrialPlan(kept=3, warmup=-1)


def test_trials_run_one_after_another():
    running = 0
    overlapped = False

    async def measure(_i: int) -> dict[str, float]:
        nonlocal running, overlapped
        running += 1
        overlapped |= running > 1
        await asyncio.sleep(0.001)
        running -= 1
        return {"x": 1.0}

    asyncio.run(run_trials(measure, TrialPlan(kept=4)))
    assert not overlapped
    assert run_trials_sync(lambda i: {"x": float(i)}, TrialPlan(kept=3)).samples["x"] == [
        1.0,
        2.0,
        3.0,
    ]


def test_log_spread_and_detectable_effects():
    assert log_spread([2.0, 2.0, 2.0]) == 0.0
    assert log_spread([0.0, 0.0]) == 0.0  # counts that stay zero
    assert math.isnan(log_spread([0.0, 1.0]))  # no log scale
    assert math.isnan(log_spread([1.0]))
    assert math.isnan(log_spread([1.0, math.nan, 1.1]))
    assert log_spread([1.0, math.e]) == pytest.approx(1 / math.sqrt(2))
    # inverting a figure (ms <-> 1/s) keeps its spread
    values = [1.0, 1.1, 0.93, 1.04]
    assert log_spread(values) == pytest.approx(log_spread([1 / v for v in values]))
    one, five = detectable_effect(0.03, 1), detectable_effect(0.03, 5)
    assert one == pytest.approx(math.expm1(2.8016 * 0.03 * math.sqrt(2)), rel=1e-3)
    assert five < one and detectable_effect(0.06, 5) > five
    assert detectable_effect(0.0, 1) == 0.0
    row = spread_row("m", [1.0, 1.1, 0.9])
    assert row.effect_1 > row.effect_5 > 0 and row.spread == log_spread([1.0, 1.1, 0.9])
    assert [band(x) for x in (0.02, 0.04, 0.08, 0.15, 0.3, math.nan)] == [
        "<= 3%",
        "<= 5%",
        "<= 10%",
        "<= 20%",
        "> 20%",
        "n/a",
    ]
    with pytest.raises(ValueError):
        detectable_effect(0.03, 0)


def test_each_role_has_its_own_limit_and_informational_figures_none():
    assert verdict("headline", 0.029) == "ok" and verdict("headline", 0.031) == "too noisy"
    assert verdict("gated", 0.099) == "ok" and verdict("gated", 0.101) == "too noisy"
    assert verdict("informational", 5.0) == "not gated"
    assert verdict("gated", math.nan) == "n/a"


class _Owner:
    param_names: tuple[str, ...] = ()


def test_a_figure_with_trials_reaches_asv_as_samples_and_one_without_as_a_number():
    with_trials = track("spawn_ceiling_ratio", "ratio", HIGHER, headline=True, method="trials")
    plain = track("agents_spawned", "count", HIGHER)
    measured = Measured(
        {"spawn_ceiling_ratio": 2.0, "agents_spawned": 10.0},
        {"spawn_ceiling_ratio": [1.0, 2.0, 3.0]},
    )
    assert with_trials(_Owner(), measured) == {"samples": [1.0, 2.0, 3.0], "number": 1}
    assert plain(_Owner(), measured) == 10.0
    assert plain(_Owner(), {"agents_spawned": 4.0}) == 4.0  # the flat metrics still work
    # a changed method is a new asv version: a new series, not a false step
    assert (
        with_trials.version != track("spawn_ceiling_ratio", "ratio", HIGHER, headline=True).version
    )


def test_declarations_refuse_what_makes_no_sense():
    with pytest.raises(ValueError, match="headline=True"):
        track("ops_per_s", "1/s", HIGHER)
    with pytest.raises(ValueError, match="cannot be informational"):
        track("ops_per_s", "1/s", HIGHER, headline=True, informational="noisy")
    with pytest.raises(ValueError, match="not a headline"):
        track("compile_ms", "ms", LOWER, headline=True)
    with pytest.raises(ValueError, match="say why"):
        track("compile_ms", "ms", LOWER, informational="  ")


def test_the_suite_declares_the_eight_headlines_and_why_each_informational_figure_is_so(
    tmp_path: Path,
):
    suite = discover(REPO / "benchmarks")
    headlines = {t.metric for t in suite if t.role == HEADLINE}
    assert headlines == HEADLINES and len(HEADLINES) == 8
    informational = [t for t in suite if t.role == INFORMATIONAL]
    assert informational and all(len(t.why) > 20 for t in informational)
    assert "messages_duplicated" in {t.metric for t in informational}
    write_sidecar(tmp_path, suite)
    assert read_sidecar(tmp_path) == {t.benchmark: t for t in suite}


def test_an_old_sidecar_without_roles_reads_as_gated(tmp_path: Path):
    (tmp_path / declarations.SIDECAR).write_text(
        '{"benchmark": "b.C.track_x", "workload": "w", "metric": "x", "unit": "ms", '
        '"direction": "lower_is_better"}\n'
    )
    assert read_sidecar(tmp_path)["b.C.track_x"] == Tracked("b.C.track_x", "w", "x", "ms", LOWER)
    assert read_sidecar(tmp_path)["b.C.track_x"].gated
