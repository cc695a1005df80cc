"""Target scoring and the run report: pure functions, exact numbers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from loadkit.common.errors import UsageError
from loadkit.runs.run_report import (
    build_report,
    load_report,
    lower_is_better,
    recommendations,
    schema,
    to_markdown,
    workload_entry,
)
from loadkit.runs.targets import Target, confidence, evaluate, headroom, overall_confidence, score

LATENCY = Target("lat_ms", "<", 100, "latency under 100 ms")
RATE = Target("rate_per_s", ">=", 1000, "at least 1000/s")
LEAKS = Target("leaked_keys", "<=", 0, "no leaks")


def validate(report: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema()).validate(report)


# --- scoring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "value", "expected"),
    [
        (LATENCY, 50, 1.0),
        (LATENCY, 200, 0.5),  # min(1, target / value)
        (LATENCY, 400, 0.25),
        (RATE, 2000, 1.0),
        (RATE, 1000, 1.0),  # inclusive op holds at the target
        (RATE, 500, 0.5),  # min(1, value / target)
        (RATE, 0, 0.0),
        (LEAKS, 0, 1.0),
        (LEAKS, 3, 0.0),  # 0 / 3
        (Target("x_ms", "<", -5), 0, 0.0),  # less-is-better, value <= 0: no ratio
        (Target("x_per_s", ">", 0), -1, 0.0),  # more-is-better, target <= 0: no ratio
    ],
)
def test_seed_score(target: Target, value: float, expected: float) -> None:
    assert score(target, value) == pytest.approx(expected)


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, -math.inf])
def test_unmeasured_value_scores_zero(missing: float | None) -> None:
    assert score(LATENCY, missing) == 0.0
    assert score(RATE, missing) == 0.0


def test_headroom_is_relative_distance_on_the_passing_side() -> None:
    assert headroom(LATENCY, 85) == pytest.approx(0.15)
    assert headroom(RATE, 1100) == pytest.approx(0.10)
    assert headroom(LEAKS, 0) is None


def test_evaluate_reports_a_missing_metric_as_unmeasured_and_failed() -> None:
    checks = evaluate([LATENCY, RATE], {"lat_ms": 50.0})
    assert checks == [
        {"metric": "lat_ms", "op": "<", "target": 100, "value": 50.0, "score": 1.0, "passed": True},
        {
            "metric": "rate_per_s",
            "op": ">=",
            "target": 1000,
            "value": None,
            "score": 0.0,
            "passed": False,
        },
    ]
    assert confidence(checks) == 0.5


def test_confidence_is_the_mean_and_nothing_is_zero() -> None:
    assert confidence([]) == 0.0
    assert confidence([{"score": 1.0}, {"score": 0.5}, {"score": 0.25}]) == pytest.approx(
        0.5833, abs=1e-4
    )
    assert overall_confidence([]) == 0.0
    assert overall_confidence([1.0, 0.5]) == 0.75


@pytest.mark.parametrize(
    ("lat", "status", "conf"),
    [
        (200.0, "passed", 0.75),  # scores 1.0 and 0.5: exactly the pass mark
        (205.0, "failed", 0.7439),  # scores 1.0 and 0.4878: just below
    ],
)
def test_workload_passes_at_three_quarters(lat: float, status: str, conf: float) -> None:
    entry = workload_entry(
        status="passed",
        duration_s=1.0,
        metrics={"lat_ms": lat, "rate_per_s": 5000.0},
        targets=[LATENCY, RATE],
    )
    assert entry["status"] == status
    assert entry["confidence"] == pytest.approx(conf, abs=1e-4)
    assert entry["bottlenecks"] == [f"lat_ms = {lat:g}, target < 100"]


def test_entry_without_targets_has_no_evidence() -> None:
    entry = workload_entry(status="passed", duration_s=0.1, metrics={"a_ms": 1.0}, targets=[])
    assert entry["confidence"] == 0.0 and entry["status"] == "failed"


def test_non_finite_metrics_become_null() -> None:
    entry = workload_entry(
        status="passed",
        duration_s=0.5,
        metrics={"lat_ms": math.nan, "rate_per_s": math.inf, "n": 3},
        targets=[LATENCY],
    )
    assert entry["metrics"] == {"lat_ms": None, "rate_per_s": None, "n": 3.0}
    assert entry["checks"][0]["value"] is None and not entry["checks"][0]["passed"]
    assert entry["bottlenecks"] == ["lat_ms = not measured, target < 100"]
    json.dumps(entry, allow_nan=False)  # valid JSON, no NaN


@pytest.mark.parametrize("status", ["error", "timeout"])
def test_crash_and_timeout_entries(status: str) -> None:
    entry = workload_entry(
        status=status,
        duration_s=120.4,
        metrics=None,
        targets=[LATENCY, RATE],
        error="RuntimeError: boom" if status == "error" else "no result within 120 s",
    )
    assert entry["status"] == status
    assert entry["checks"] == [] and entry["confidence"] == 0.0 and entry["metrics"] == {}
    good = workload_entry(
        status="passed", duration_s=1, metrics={"lat_ms": 1, "rate_per_s": 1e4}, targets=[LATENCY]
    )
    # Three perfect workloads lift the mean to 0.75, but a run with a crash never passes.
    workloads = {"a": good, "b": good, "c": good, "broken": entry}
    report = build_report(workloads, {"a": [LATENCY], "broken": [LATENCY, RATE]}, scale="quick")
    validate(report)
    assert report["overall_confidence"] == 0.75
    assert report["passed"] is False
    first = report["recommendations"][0]
    assert first["priority"] == "HIGH" and first["workload"] == "broken"
    assert f"({status})" in first["message"] and entry["error"] in first["message"]


# --- recommendations --------------------------------------------------------------------


def _entry(metrics: dict[str, float], targets: list[Target]) -> dict[str, Any]:
    return workload_entry(status="passed", duration_s=1.0, metrics=metrics, targets=targets)


def test_no_low_for_a_success_ratio_already_at_one() -> None:
    """A recovery ratio of 1 against "> 0.95" cannot improve: no headroom advice."""
    perfect = Target("recovery_ratio", ">", 0.95)
    near = Target("election_ratio", ">", 0.95)
    w = {"swarm": _entry({"recovery_ratio": 1.0, "election_ratio": 0.97}, [perfect, near])}
    recs = recommendations(w, {"swarm": [perfect, near]})
    assert [(r["priority"], r["message"].split()[0]) for r in recs] == [("LOW", "election_ratio")]


def test_high_for_a_check_below_target_with_its_reason() -> None:
    w = {"fleet": _entry({"lat_ms": 150.0}, [LATENCY])}
    recs = recommendations(w, {"fleet": [LATENCY]})
    assert recs == [
        {
            "priority": "HIGH",
            "workload": "fleet",
            "message": "lat_ms is 150, target < 100 (latency under 100 ms)",
        }
    ]


def test_low_only_for_strict_checks_with_under_20_percent_headroom() -> None:
    tight_strict = Target("a_ms", "<", 100)
    tight_inclusive = Target("b_ms", "<=", 100)
    roomy = Target("c_per_s", ">", 100)
    metrics = {"a_ms": 85.0, "b_ms": 99.0, "c_per_s": 150.0}
    targets = [tight_strict, tight_inclusive, roomy]
    recs = recommendations({"w": _entry(metrics, targets)}, {"w": targets})
    assert [r["priority"] for r in recs] == ["LOW"]
    assert "a_ms" in recs[0]["message"] and "15%" in recs[0]["message"]
    # 21% headroom is enough.
    recs = recommendations({"w": _entry({"a_ms": 79.0}, [tight_strict])}, {"w": [tight_strict]})
    assert recs == [{"priority": "INFO", "workload": "*", "message": "all targets met"}]


def test_medium_for_a_metric_degraded_against_the_baseline() -> None:
    old = {"workloads": {"w": {"metrics": {"lat_ms": 10.0, "rate_per_s": 1000.0, "x": 1.0}}}}
    # lat_ms 12% worse (higher), rate_per_s 5% worse (within tolerance), x has no direction.
    now = _entry({"lat_ms": 11.2, "rate_per_s": 950.0, "x": 5.0}, [])
    recs = recommendations({"w": now}, {"w": []}, baseline=old)
    assert [(r["priority"], r["message"].split()[0]) for r in recs] == [("MEDIUM", "lat_ms")]
    assert "12%" in recs[0]["message"]
    # Throughput falling by 20% is worse; latency falling is better.
    now = _entry({"lat_ms": 5.0, "rate_per_s": 800.0}, [])
    recs = recommendations({"w": now}, {"w": []}, baseline=old)
    assert [(r["priority"], r["message"].split()[0]) for r in recs] == [("MEDIUM", "rate_per_s")]


def test_direction_comes_from_the_target_before_the_name() -> None:
    assert lower_is_better("spawn_avg_ms") is True
    assert lower_is_better("spawn_rate_per_s") is False
    assert lower_is_better("cleanup_leaked_keys") is True
    assert lower_is_better("autoscale_overshoot_ratio") is True
    assert lower_is_better("agents_spawned") is None
    assert lower_is_better("agents_spawned", [Target("agents_spawned", ">=", 10)]) is False
    # The same name rule as loadkit check uses for asv series.
    assert lower_is_better("recovery_ratio") is False
    assert lower_is_better("parallel_scaling_ratio") is False
    assert lower_is_better("recovery_s") is True


def test_recommendations_are_sorted_high_medium_low() -> None:
    targets = [LATENCY, Target("b_ms", "<", 100)]
    w = {"w": _entry({"lat_ms": 150.0, "b_ms": 90.0, "c_ms": 2.0}, targets)}
    old = {"workloads": {"w": {"metrics": {"c_ms": 1.0}}}}
    recs = recommendations(w, {"w": targets}, baseline=old)
    assert [r["priority"] for r in recs] == ["HIGH", "MEDIUM", "LOW"]


# --- the whole report ------------------------------------------------------------------


def _sample_report(**kwargs: Any) -> dict[str, Any]:
    targets = {"fleet": [LATENCY, RATE, LEAKS], "other": [LATENCY]}
    workloads = {
        "fleet": _entry(
            {"lat_ms": 12.0, "rate_per_s": 4000.0, "leaked_keys": 0.0}, [*targets["fleet"]]
        ),
        "other": workload_entry(
            status="timeout", duration_s=3.0, metrics=None, targets=[LATENCY], error="too slow"
        ),
    }
    return build_report(
        workloads,
        targets,
        scale="quick",
        commit="abc123",
        created=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        **kwargs,
    )


def test_report_validates_against_the_schema() -> None:
    report = _sample_report(links={"history": "html/index.html"})
    validate(report)
    assert report["created"] == "2026-11-27T12:00:00Z"
    assert report["schema"] == "loadkit.report/1"
    assert report["machine"]["cpus"] >= 1
    assert report["workloads"]["fleet"]["status"] == "passed"
    assert report["overall_confidence"] == 0.5
    assert report["passed"] is False
    validate(json.loads(json.dumps(report)))


def test_schema_rejects_a_broken_report() -> None:
    report = _sample_report()
    report["workloads"]["fleet"]["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        validate(report)


def test_empty_run_does_not_pass() -> None:
    report = build_report({}, {}, scale="quick")
    validate(report)
    assert report["passed"] is False


def test_markdown_renders_every_part() -> None:
    report = _sample_report(links={"benchmark history": "html/index.html"})
    md = to_markdown(report)
    assert md.startswith("# loadkit run report\n")
    assert "commit: `abc123`, scale: quick" in md
    assert "**NOT PASSED**" in md
    assert "- [benchmark history](html/index.html)" in md
    assert "| fleet | passed | 1.00 | 1.0 s |" in md
    assert "| other | timeout | 0.00 | 3.0 s |" in md
    assert "- **HIGH** (other): other did not finish (timeout): too slow" in md
    assert "Error: `too slow`" in md
    assert "| lat_ms | 12 | < 100 | 1.00 | pass |" in md
    assert "| rate_per_s | 4000 |" in md
    assert md.count("## fleet") == 1 and md.count("## other") == 1


def test_markdown_shows_unmeasured_values_as_a_dash() -> None:
    w = {"w": _entry({"lat_ms": math.nan}, [LATENCY])}
    md = to_markdown(build_report(w, {"w": [LATENCY]}, scale="full"))
    assert "| lat_ms | — | < 100 | 0.00 | FAIL |" in md


# --- baselines -------------------------------------------------------------------------


def test_load_report_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "base.json"
    path.write_text(json.dumps(_sample_report()))
    assert load_report(path)["commit"] == "abc123"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "not readable JSON"),
        ('{"schema": "other/1"}', "not a loadkit report"),
        ("[1, 2]", "not a loadkit report"),
        ('{"schema": "loadkit.report/1", "workloads": []}', "corrupt"),
        ('{"schema": "loadkit.report/1", "workloads": {"w": {"metrics": [1]}}}', "corrupt"),
        ('{"schema": "loadkit.report/1", "workloads": {"w": {"metrics": {"a": "1"}}}}', "corrupt"),
    ],
)
def test_bad_baseline_is_a_usage_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_report(path)
    if content is not None:
        assert path.read_text() == content  # reading a bad file never touches it
