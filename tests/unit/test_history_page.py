"""The history page without a browser: grouping, order, first-run content, lazy plots,
the links to asv, and the command's paths. The browser view is in test_history_e2e."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from helpers import run_history_cli as run_cli

from loadkit.common.site_paths import page_dir, page_link
from loadkit.history.present import check_table as tables
from loadkit.history.present.page import (
    MAX_INLINE_PLOTS,
    SERIES_DIR,
    PageFacts,
    asv_link,
    asv_site_needs_internet,
    render_page,
)
from loadkit.history.present.page_rows import group_scores, slug, split_benchmark, verdict_counts
from loadkit.history.present.svg_plots import bucket_bounds, detail_plot, sparkline
from loadkit.history.sources.run_targets import parse_run_report, read_run_targets
from loadkit.history.stats.scoring import ScoringOptions, score_machine, score_series, worst_first
from loadkit.history.stats.series import Series


def _series(levels, name: str, benchmark: str = "", samples: int = 6, seed: int = 0, **kw):
    generator = np.random.default_rng(seed)
    measurements = [level * (1 + 0.01 * generator.standard_normal(samples)) for level in levels]
    commits = [f"{i:02x}" * 20 for i in range(len(levels))]
    return Series(name, commits, measurements, benchmark=benchmark or name, **kw)


def _facts(commit: str = "ab" * 20, **kw) -> PageFacts:
    return PageFacts(
        title="history <x>",
        machine="box",
        commit=commit,
        confidence=0.95,
        min_effect=0.05,
        false_discovery=0.01,
        **kw,
    )


def test_benchmark_names_split_into_suite_class_and_function():
    assert split_benchmark("bench_work.Work.time_loop") == ("bench_work", "Work", "time_loop")
    assert split_benchmark("query_benchmarks.query_delete.benchmark.QueryDelete.time_q") == (
        "query_benchmarks",
        "query_delete.benchmark.QueryDelete",
        "time_q",
    )
    assert split_benchmark("suite.time_function") == ("suite", "", "time_function")
    assert split_benchmark("lonely") == ("lonely", "", "lonely")


def test_slugs_are_unique_and_safe():
    used: set[str] = set()
    assert slug("a/b c", used) == "a_b_c"
    assert slug("a/b c", used) == "a_b_c_2"
    assert slug("///", used) == "series"


def test_values_keep_zero_and_their_unit():
    assert tables.value_text(0.0, "seconds") == "0 s"
    assert tables.value_text(0.0, "items") == "0 items"
    assert tables.value_text(0.00123, "seconds") == "1.23 ms"
    assert tables.value_text(3 * 2**20, "bytes") == "3 MiB"
    assert tables.value_text(50_000.0, "iterations") == "50,000 iterations"
    assert tables.value_text(None, "seconds") == "no result"
    assert tables.value_text(float("nan"), "") == "no result"


def test_parameters_fold_into_one_row_and_the_worst_row_comes_first():
    quiet = [1.0] * 12
    series = [
        _series(quiet, "a.Alpha.time_x(n=1)", "a.Alpha.time_x", seed=1),
        _series(quiet, "a.Alpha.time_x(n=2)", "a.Alpha.time_x", seed=2),
        _series(quiet, "a.Alpha.time_y", seed=3),
        _series([*quiet, 1.6], "z.Zeta.time_slow(n=1)", "z.Zeta.time_slow", seed=4),
        _series(quiet, "z.Zeta.time_slow(n=2)", "z.Zeta.time_slow", seed=5),
    ]
    scores = worst_first(score_machine(series, ScoringOptions()))
    assert scores[0].series.name == "z.Zeta.time_slow(n=1)" and scores[0].failing
    suites = group_scores(scores)
    assert [s.name for s in suites] == ["z", "a"]  # the failing suite first
    (zeta,) = suites[0].classes
    (row,) = zeta.rows
    assert row.function == "time_slow" and [m.label for m in row.members] == ["(n=1)", "(n=2)"]
    assert row.worst.score.failing
    alpha = suites[1].classes[0]
    assert {r.function: len(r.members) for r in alpha.rows} == {"time_x": 2, "time_y": 1}
    counts = verdict_counts(scores)
    assert sum(counts.values()) == 5 and counts[scores[0].verdict] >= 1


def test_page_leads_with_the_verdict_and_failing_rows(tmp_path):
    quiet = [1.0] * 12
    series = [_series(quiet, f"m.C.time_{i}", seed=i) for i in range(6)]
    series.append(_series([*quiet, 1.5], "m.C.time_bad", seed=9))
    scores = worst_first(score_machine(series, ScoringOptions()))
    page = render_page(scores, tmp_path, _facts(asv_page="../html/index.html", notes=["a & b"]))
    text = page.read_text()
    assert "history &lt;x&gt;" in text and "a &amp; b" in text
    summary = text[text.index('id="summary"') : text.index('id="notes"')]
    assert "REGRESSION at abababab" in summary and "m.C.time_bad" in summary
    failing = re.search(r'<table id="failing">.*?</table>', summary).group(0)
    assert failing.count("<tr>") == 2  # header and the one failing row
    for cell in tables.score_cells(scores[0]):
        assert html.escape(cell) in failing
    assert 'href="../html/index.html#m.C.time_bad?machine=box"' in text
    assert text.count('<svg class="spark"') == 7
    assert "<img" not in text and "http://" not in text and "https://" not in text


def test_flagged_plots_are_inline_and_the_rest_load_on_demand(tmp_path):
    quiet = [1.0] * 10
    series = [_series(quiet, f"m.C.time_{i}", seed=i) for i in range(4)]
    series.append(_series([*quiet, 1.5], "m.C.time_bad", seed=9))
    scores = worst_first(score_machine(series, ScoringOptions()))
    page = render_page(scores, tmp_path, _facts())
    text = page.read_text()
    assert text.count('<svg class="detail"') == 1
    lazy = sorted((tmp_path / SERIES_DIR).glob("*.js"))
    assert len(lazy) == 4 and not (tmp_path / SERIES_DIR / "m.C.time_bad.js").exists()
    content = lazy[0].read_text()
    assert content.startswith("window.loadkitPlot(") and '<svg class=\\"detail\\"' in content


@pytest.mark.slow
def test_a_thousand_series_page_stays_small(tmp_path):
    rng = np.random.default_rng(1)
    commits = 200
    series = [
        Series(
            f"s{i % 7}.K{i % 13}.time_{i}",
            [f"{c:040x}" for c in range(commits)],
            list(1.0 + 0.02 * rng.standard_normal((commits, 3))),
            benchmark=f"s{i % 7}.K{i % 13}.time_{i}",
        )
        for i in range(1200)
    ]
    scores = [score_series(s) for s in series[:3]] * 400  # scoring is tested elsewhere
    page = render_page(scores, tmp_path, _facts())
    size = page.stat().st_size
    assert size < 3_000_000, size  # ~2.5 kB a row: sparkline and cells, no full plots
    assert page.read_text().count('<svg class="detail"') <= MAX_INLINE_PLOTS


def test_one_commit_shows_values_and_the_run_targets_not_no_history(tmp_path):
    one = ["ab" * 20]
    series = [
        Series("m.C.time_a", one, [np.array([0.002, 0.002, 0.002])], unit="seconds"),
        Series("m.C.track_b", one, [np.array([42.0])], unit="items"),
    ]
    scores = worst_first(score_machine(series, ScoringOptions()))
    report = {
        "commit": "cd" * 20,
        "created": "2026-01-01T00:00:00Z",
        "passed": False,
        "workloads": {
            "chat": {
                "checks": [
                    {"metric": "p95_ms", "op": "<=", "target": 50, "value": 12.5, "passed": True},
                    {"metric": "errors", "op": "<=", "target": 0, "value": 0, "passed": True},
                    {"metric": "rps", "op": ">=", "target": 100, "value": None, "passed": False},
                ]
            }
        },
    }
    targets = parse_run_report(report, tmp_path / "report.json")
    page = render_page(scores, tmp_path, _facts(run_targets=targets))
    text = page.read_text()
    assert "no history" not in text and "First results" in text
    assert "2 ms" in text and "42 items" in text and text.count("first result") == 2
    section = text[text.index('id="run-targets"') : text.index('class="suite"')]
    assert "p95_ms" in section and "12.5" in section and "&lt;= 50" in section
    errors = re.search(r"<td>errors</td><td[^>]*>([^<]*)</td>", section).group(1)
    assert errors == "0"  # zero is a value
    assert "no result" in section and "FAIL" in section


def test_run_report_is_optional_and_a_bad_one_is_a_note(tmp_path):
    assert read_run_targets(tmp_path / "missing.json") == (None, None)
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    targets, note = read_run_targets(bad)
    assert targets is None and "report.json" in note
    with pytest.raises(ValueError):
        parse_run_report({"workloads": []}, bad)


def test_svg_plots_are_well_formed_for_short_and_long_histories():
    import xml.etree.ElementTree as ET

    for levels in ([1.0], [1.0, 1.0], [1.0] * 30 + [2.0] * 30, list(np.linspace(1, 2, 1500))):
        score = score_series(_series(levels, "m.C.time_x", unit="seconds"))
        for svg in (sparkline(score), detail_plot(score)):
            ET.fromstring(svg)  # raises on malformed markup
    assert list(bucket_bounds(5, 60)) == [0, 1, 2, 3, 4, 5]
    assert len(bucket_bounds(1500, 60)) == 61


def test_asv_links_and_the_offline_note(tmp_path):
    link = asv_link("../html/index.html", "a.B.time_x", "my box")
    assert link == "../html/index.html#a.B.time_x?machine=my%20box"
    index = tmp_path / "index.html"
    assert not asv_site_needs_internet(index)
    index.write_text('<script src="https://code.jquery.com/jquery.js"></script>')
    assert asv_site_needs_internet(index)
    index.write_text('<script src="vendor/jquery.js"></script>')
    assert not asv_site_needs_internet(index)


def test_report_command_paths(tmp_path, capsys):
    html = tmp_path / "html"
    assert page_dir(html) == tmp_path / "html-loadkit"
    assert page_link(html) is None
    assert run_cli(["report", "--results", str(tmp_path / "nope"), "--html", str(html)]) == 2
    assert "nope" in capsys.readouterr().err
    assert run_cli(["report", "--results", str(tmp_path), "--html", "/"]) == 2
