"""Scoring, simulation and presentation of loadkit.history, on constructed series."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import run_history_cli as run_cli

from loadkit.history.calibration import machine_simulation, simulation
from loadkit.history.calibration import tables as calibration_tables
from loadkit.history.present import check_table as tables
from loadkit.history.stats.gate import Verdict, run_gate
from loadkit.history.stats.scoring import ScoringOptions, score_series, worse_fraction, worst_first
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction


def _series(levels, samples: int = 8, seed: int = 0, name: str = "bench.X.time_x", **kw):
    generator = np.random.default_rng(seed)
    measurements = [level * (1 + 0.01 * generator.standard_normal(samples)) for level in levels]
    commits = [f"{i:02x}" * 20 for i in range(len(levels))]
    return Series(name=name, commits=commits, measurements=measurements, **kw)


# --- series -----------------------------------------------------------------------


def test_series_checks_lengths_and_truncates_at_a_commit():
    with pytest.raises(ValueError):
        Series("x", ["a"], [])
    series = _series([1.0] * 5)
    cut = series.up_to(series.commits[2][:7])
    assert cut.commits == series.commits[:3] and len(cut.measurements) == 3
    with pytest.raises(KeyError):
        series.up_to("zzz")
    assert series.has_samples and series.centres.shape == (5,)


# --- scoring ----------------------------------------------------------------------


def test_a_slow_newest_commit_fails_the_check():
    score = score_series(_series([1.0] * 10 + [1.3]))
    assert score.verdict is Verdict.REGRESSION and score.failing
    assert score.worse_fraction == pytest.approx(0.3, abs=0.03)
    assert score.reference_start == 0 and score.regression_detected


def test_a_small_regression_is_reported_but_does_not_fail():
    series = _series([1.0] * 10 + [1.08], samples=30)
    score = score_series(series, ScoringOptions(min_effect=0.1))
    assert score.verdict is Verdict.REGRESSION
    assert not score.failing  # below the 10 % minimum effect
    assert score_series(series, ScoringOptions(min_effect=0.05)).failing


def test_the_commit_after_a_regression_is_judged_against_the_new_level():
    score = score_series(_series([1.0] * 10 + [1.3, 1.3]))
    assert [shift.index for shift in score.recent_shifts] == [10]
    assert score.recent_shifts[0].gate.verdict is Verdict.REGRESSION
    assert score.reference_start == 10
    assert not score.failing and score.regression_detected


def test_an_old_step_becomes_a_change_point_and_the_reference_starts_there():
    score = score_series(_series([1.0] * 20 + [1.2] * 10))
    assert [cp.index for cp in score.change_points] == [20]
    assert score.reference_start == 20
    assert score.verdict is Verdict.NO_CHANGE


def test_higher_is_better_series_regress_downward():
    series = _series([1000.0] * 10 + [700.0], direction=Direction.HIGHER_IS_BETTER)
    score = score_series(series)
    assert score.verdict is Verdict.REGRESSION and score.failing
    assert score.worse_fraction == pytest.approx(0.3, abs=0.03)
    assert worse_fraction(1.2, Direction.HIGHER_IS_BETTER) == pytest.approx(-0.2)


def test_one_commit_has_no_gate():
    score = score_series(_series([1.0]))
    assert score.gate is None and score.verdict is Verdict.INCONCLUSIVE and not score.failing


def test_worst_first_puts_failing_then_severity():
    good = score_series(_series([1.0] * 10, name="a.good"))
    bad = score_series(_series([1.0] * 10 + [1.5], name="b.bad"))
    better = score_series(_series([1.0] * 10 + [0.6], name="c.better"))
    ordered = [s.series.name for s in worst_first([better, good, bad])]
    assert ordered == ["b.bad", "a.good", "c.better"]


def test_scoring_is_deterministic():
    series = _series([1.0] * 15 + [1.1] * 5, seed=3)
    first, second = score_series(series), score_series(series)
    assert tables.score_to_dict(first) == tables.score_to_dict(second)


def test_score_json_has_no_infinities():
    score = score_series(_series([1.0, 2.0], samples=1))
    text = json.dumps(tables.score_to_dict(score), allow_nan=False)
    assert json.loads(text)["detectable_effect"] is None


# --- simulation -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["normal", "ar1", "lognormal", "bimodal"])
def test_noise_shapes_have_the_stated_scale(kind):
    draws = simulation.noise(kind, 20_000, 0.02, np.random.default_rng(1))
    if kind == "bimodal":
        share = simulation.BIMODAL_SHARE
        assert np.mean(draws) == pytest.approx(0.02 * 3 * share, abs=0.002)
    else:
        assert np.std(draws) == pytest.approx(0.02, rel=0.1)
    if kind == "ar1":
        assert np.corrcoef(draws[:-1], draws[1:])[0, 1] == pytest.approx(0.6, abs=0.05)
    with pytest.raises(ValueError):
        simulation.noise("nope", 3, 0.02, np.random.default_rng(1))


def test_simulated_paths_put_the_change_where_stated():
    by_name = {s.name: s for s in simulation.SCENARIOS}
    step = by_name["step10"].level(40)
    assert step[29] == 1.0 and step[30] == pytest.approx(1.1)
    assert by_name["drift10"].level(40)[-1] == pytest.approx(1.1)
    assert {s.name for s in simulation.SCENARIOS} >= {
        "none",
        "step5",
        "step10",
        "step20",
        "drift10",
        "ar1_none",
        "lognormal_none",
        "bimodal_none",
    }


def test_asv_flags_a_large_step_and_not_a_flat_line():
    assert simulation.asv_flags(np.r_[np.ones(20), np.full(20, 2.0)])
    assert not simulation.asv_flags(np.ones(40))


def test_a_small_calibration_cell_behaves():
    by_name = {s.name: s for s in simulation.SCENARIOS}
    strong = simulation.run_cell(by_name["step20"], series=20, seed=1)
    assert strong.loadkit_flag_rate >= 0.9 and strong.loadkit_localized_rate >= 0.9
    quiet = simulation.run_cell(by_name["none"], series=40, seed=1)
    assert quiet.loadkit_flag_rate <= 0.05 and quiet.loadkit_localized_rate is None


def test_gate_cells_fail_a_big_newest_step_and_not_a_quiet_one():
    by_name = {s.name: s for s in simulation.GATE_SCENARIOS}
    step = simulation.run_gate_cell(by_name["gate_step10"], series=15, seed=1)
    assert step.check_fail_rate >= 0.8 and step.median_detectable_effect < 0.1
    quiet = simulation.run_gate_cell(by_name["gate_none"], series=15, seed=1)
    assert quiet.check_fail_rate == 0.0 and quiet.met


@pytest.mark.slow
def test_calibrate_command_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "c.json"
    code = run_cli(["calibrate", "--series", "3", "--seed", "7", "--json", str(out)])
    document = json.loads(out.read_text())
    keys = {
        "scenario",
        "noise",
        "n",
        "series",
        "loadkit_flag_rate",
        "loadkit_localized_rate",
        "asv_flag_rate",
    }
    assert len(document["cells"]) == len(simulation.SCENARIOS)
    assert all(keys <= set(cell) for cell in document["cells"])
    assert [cell["scenario"] for cell in document["cells"]] == [
        s.name for s in simulation.SCENARIOS
    ]
    assert len(document["gate_cells"]) == len(simulation.GATE_SCENARIOS)
    assert [c["scenario"] for c in document["machine_cells"]] == [
        s.name for s in machine_simulation.MACHINE_SCENARIOS
    ]
    assert [row["level"] for row in document["calibration"]] == list(
        machine_simulation.CALIBRATION_LEVELS
    )
    assert document["suite"]["series_per_suite"] == machine_simulation.SUITE_SERIES
    rows = [
        *document["cells"],
        *document["gate_cells"],
        *document["machine_cells"],
        *document["calibration"],
        document["suite"],
    ]
    assert code == (0 if all(row["met"] for row in rows) else 1)
    out_text = capsys.readouterr().out
    assert "step_detect" in out_text and "calibration" in out_text and "suite" in out_text


def test_calibrate_rejects_a_non_positive_series_count(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(["calibrate", "--series", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("bad", ["1.5", "0.5", "x"])
def test_check_rejects_bad_confidence(bad):
    with pytest.raises(SystemExit) as exc:
        run_cli(["check", "--confidence", bad])
    assert exc.value.code == 2


def test_check_without_results_is_a_usage_error(tmp_path, capsys):
    assert run_cli(["check", "--results", str(tmp_path / "none")]) == 2
    (tmp_path / "empty").mkdir()
    assert run_cli(["check", "--results", str(tmp_path / "empty")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)


def test_tables_render_without_a_terminal():
    from rich.console import Console

    score = score_series(_series([1.0] * 10 + [1.4], name="bench.X.time_x [env-py3.11]"))
    console = Console(width=200, record=True)
    console.print(tables.check_table([score], "t"))
    text = console.export_text()
    assert "REGRESSION ✗" in text and "+39" in text
    assert "[env-py3.11]" in text  # names are not read as rich markup
    cell = simulation.run_cell(simulation.SCENARIOS[0], series=2, seed=0)
    console.print(calibration_tables.calibration_table([cell], "c"))
    assert "none" in console.export_text()
    assert math.isfinite(score.gate.ratio)


def test_a_short_reference_borrows_the_scatter_of_the_whole_history():
    generator = np.random.default_rng(21)
    levels = [*(1.0 + 0.02 * generator.standard_normal(12)), 1.5, 1.6]
    series = _series(levels, samples=10)  # 1 % within a commit, 2 % between commits
    score = score_series(series)
    assert [shift.index for shift in score.recent_shifts] == [12]
    assert score.gate.reference_commits == 1
    assert score.verdict is not Verdict.REGRESSION
    # The scale is the history's (about 2 %), not unknown as one reference commit
    # alone would leave it.
    assert 0.01 < score.gate.noise_scale < 0.04 and score.gate.noise_df >= 5
    alone = run_gate(
        series.measurements[12:13], series.measurements[13], Direction.LOWER_IS_BETTER, 0.95, 0.05
    )
    assert math.isinf(alone.detectable_effect)
    assert score.gate.detectable_effect < 0.5
