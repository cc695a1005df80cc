"""The comparison's rows, comment and JSON, on fixed rounds; the comment on golden files.

``LOADKIT_UPDATE_GOLDEN=1`` rewrites the golden files (then read the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadkit.history.present.compare_output import (
    COMMENT_MARKER,
    CompareFacts,
    json_document,
    markdown,
    summary_line,
)
from loadkit.history.stats.compare_rows import SideData, Status, build_rows, exit_code
from loadkit.runs.direction import Direction

GOLDEN = Path(__file__).parent / "golden"
FACTS = CompareFacts(
    base="a" * 40,
    head="b" * 40,
    rounds=4,
    confidence=0.95,
    min_effect=0.05,
    false_discovery=0.01,
    wall_s=312.0,
    scale="quick",
)
QUIET = {f"bench_wasm.Parse.time_doc_{i}": 0.010 + 0.0001 * i for i in range(8)}
ROUND_NOISE = (1.0, 1.012, 0.991, 1.004)


def _side(values: dict[str, float], factor: dict[str, float], skip=(), fail=()) -> SideData:
    rounds = {
        name: [v * factor.get(name, 1.0) * n for n in ROUND_NOISE]
        for name, v in values.items()
        if name not in skip and name not in fail
    }
    return SideData(
        rounds, {name: 4 for name in fail}, frozenset(n for n in values if n not in skip)
    )


def _rows(
    head_factor: dict[str, float], *, base_skip=(), head_skip=(), head_fail=(), informational=()
):
    values = {
        **QUIET,
        "bench_wasm.Speed.track_mb_per_s": 40.0,
        "bench_fleet.Fleet.track_spawn_ms": 3.0,
        "bench_swarm.Swarm.track_delivered_per_s": 900.0,
    }
    units = {name: "seconds" for name in QUIET} | {
        "bench_wasm.Speed.track_mb_per_s": "MB/s",
        "bench_fleet.Fleet.track_spawn_ms": "ms",
        "bench_swarm.Swarm.track_delivered_per_s": "1/s",
    }
    directions = {
        name: Direction.HIGHER_IS_BETTER if "per_s" in name else Direction.LOWER_IS_BETTER
        for name in values
    }
    base = _side(values, {}, skip=base_skip)
    head = _side(values, head_factor, skip=head_skip, fail=head_fail)
    return build_rows(base, head, directions, units, 0.95, 0.05, 0.01, informational=informational)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LOADKIT_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_a_slower_parser_fails_with_its_benchmarks_named_first():
    rows = _rows({"bench_wasm.Speed.track_mb_per_s": 1 / 1.2, "bench_wasm.Parse.time_doc_3": 1.2})
    assert exit_code(rows) == 1
    assert [r.status for r in rows[:2]] == [Status.REGRESSION, Status.REGRESSION]
    assert {r.name for r in rows[:2]} == {
        "bench_wasm.Speed.track_mb_per_s",
        "bench_wasm.Parse.time_doc_3",
    }
    text = markdown(rows, FACTS)
    assert text.splitlines()[0].startswith("❌ **loadkit compare** — REGRESSION: 2 regression")
    _golden("compare_regression.md", text)


def test_an_unchanged_head_passes_and_folds_everything():
    rows = _rows({})
    assert exit_code(rows) == 0
    assert all(r.status is Status.NO_CHANGE for r in rows)
    text = markdown(rows, FACTS)
    assert text.startswith("✅ **loadkit compare** — PASSED")
    assert "### Regressions" not in text and "<details>" in text
    assert text.rstrip().endswith(COMMENT_MARKER)
    _golden("compare_pass.md", text)


def test_one_sided_and_failing_benchmarks_are_listed_never_dropped():
    rows = _rows(
        {"bench_swarm.Swarm.track_delivered_per_s": 1.3},
        base_skip=("bench_fleet.Fleet.track_spawn_ms",),
        head_skip=("bench_wasm.Parse.time_doc_0",),
        head_fail=("bench_wasm.Parse.time_doc_1",),
    )
    status = {r.name: r.status for r in rows}
    assert status["bench_fleet.Fleet.track_spawn_ms"] is Status.NEW
    assert status["bench_wasm.Parse.time_doc_0"] is Status.GONE
    assert status["bench_wasm.Parse.time_doc_1"] is Status.BROKEN
    assert status["bench_swarm.Swarm.track_delivered_per_s"] is Status.IMPROVEMENT
    assert len(rows) == 11
    assert exit_code(rows) == 1  # a benchmark the head breaks fails the gate
    text = markdown(rows, FACTS)
    _golden("compare_mixed.md", text)
    document = json_document(rows, FACTS)
    assert document["schema"] == "loadkit.compare/1" and document["exit_code"] == 1
    entries = {e["name"]: e for e in document["entries"]}
    assert set(entries) == {r.name for r in rows}
    assert entries["bench_wasm.Parse.time_doc_0"]["verdict"] == "GONE"
    assert entries["bench_wasm.Parse.time_doc_0"]["head"] is None
    assert entries["bench_swarm.Swarm.track_delivered_per_s"]["change"] == pytest.approx(0.3)
    json.dumps(document, allow_nan=False)  # strict JSON: no NaN or Infinity


def test_summary_line_counts_every_status():
    rows = _rows({"bench_wasm.Speed.track_mb_per_s": 1 / 1.2})
    line = summary_line(rows, FACTS)
    assert line.startswith("REGRESSION: 1 regression, 10 no change")
    assert "bbbbbbbb against aaaaaaaa, 4 rounds each, 5.2 min" in line


def test_zero_counts_are_values_not_failures():
    """No leaked keys on either side is no change; a count that moves off zero is shown
    with both medians, unjudged (no ratio exists)."""
    zero = "bench_fleet.Cleanup.track_leaked_keys"
    moved = "bench_fleet.Cleanup.track_rss_growth_kib"
    base = SideData({zero: [0.0, 0.0, 0.0], moved: [-2.0, 0.0, 1.0]}, {}, frozenset({zero, moved}))
    head = SideData({zero: [0.0, 0.0, 0.0], moved: [3.0, 4.0, 2.0]}, {}, frozenset({zero, moved}))
    lower = {zero: Direction.LOWER_IS_BETTER, moved: Direction.LOWER_IS_BETTER}
    rows = {r.name: r for r in build_rows(base, head, lower, {}, 0.95, 0.05, 0.01)}
    assert rows[zero].status is Status.NO_CHANGE
    assert rows[moved].status is Status.INCONCLUSIVE
    assert rows[moved].base_median == 0.0 and rows[moved].head_median == 3.0
    assert exit_code(list(rows.values())) == 0


def test_a_figure_the_suite_does_not_gate_is_judged_and_shown_but_never_fails():
    """An informational benchmark 20 % worse is a REGRESSION in its row, marked not
    gated, and the comparison passes; the same change of a gated one fails it."""
    slower = "bench_wasm.Speed.track_mb_per_s"
    assert exit_code(_rows({slower: 1 / 1.2})) == 1
    rows = _rows({slower: 1 / 1.2}, informational={slower})
    row = next(r for r in rows if r.name == slower)
    assert row.status is Status.REGRESSION and not row.gated and not row.fails
    assert exit_code(rows) == 0
    line = summary_line(rows, FACTS)
    assert line.startswith("PASSED: 1 regression, 10 no change, 1 of the regressions not gated")
    text = markdown(rows, FACTS)
    assert text.startswith("✅") and "### Regressions" not in text
    folded = text.split("<details>", 1)[1]
    assert f"| `{slower}` |" in folded and "| REGRESSION (not gated) |" in folded
    entries = {e["name"]: e for e in json_document(rows, FACTS)["entries"]}
    assert entries[slower]["gated"] is False and entries[slower]["verdict"] == "REGRESSION"
    assert json_document(rows, FACTS)["exit_code"] == 0


def test_an_informational_benchmark_the_head_breaks_still_fails():
    broken = "bench_wasm.Parse.time_doc_1"
    rows = _rows({}, head_fail=(broken,), informational={broken})
    assert next(r for r in rows if r.name == broken).status is Status.BROKEN
    assert exit_code(rows) == 1


def test_informational_benchmarks_do_not_use_up_the_gated_ones_false_discoveries():
    """The gated benchmarks' false-discovery step counts only gated benchmarks: one
    gated benchmark 15 % slower beside eleven unchanged ones is inconclusive when all
    twelve are gated, and found when the eleven are informational."""
    names = [f"bench_wasm.Parse.time_doc_{i}" for i in range(12)]
    noise = (1.0, 1.06, 0.95, 1.03)

    def side(slower: float) -> SideData:
        rounds = {n: [0.01 * (slower if n == names[0] else 1.0) * x for x in noise] for n in names}
        return SideData(rounds, {}, frozenset(names))

    lower = dict.fromkeys(names, Direction.LOWER_IS_BETTER)

    def judged(informational=()):
        rows = build_rows(side(1.0), side(1.15), lower, {}, 0.95, 0.05, 0.01, None, informational)
        return next(r for r in rows if r.name == names[0])

    alone, beside = judged(), judged(set(names[1:]))
    assert alone.status is Status.INCONCLUSIVE
    assert beside.status is Status.REGRESSION and beside.fails
    assert beside.result.detectable_effect < alone.result.detectable_effect
