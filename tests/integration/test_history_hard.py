"""``loadkit check`` on the histories real result sets make hard, through the console
script, on small seeded result sets written in asv's formats 1 (asv 0.4) and 2:

- a commit that moves every benchmark of a steady dedicated machine, after 13 commits
  and after one, beside a shared runner whose whole level flips and comes back;
- a newest commit whose benchmarks all failed, some failed, or that nobody measured;
- an environment renamed when a requirement was added (one history), or re-pinned
  (two);
- files in asv's old format, read as they are and left untouched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import run_loadkit
from history_fixtures import (
    newest_failed,
    renamed_environment,
    runner_lotteries,
    shared_move,
    write_index,
    write_result_set,
)

MACHINE_ROW = "(all benchmarks)"
FORMATS = [pytest.param(1, id="asv-format-1"), pytest.param(2, id="asv-format-2")]


def _check(results: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str, str]:
    """``check`` with the commits in asv's order (the index written beside the results)."""
    out = tmp_path / "check.json"
    if "--asv-index" not in extra:
        extra = (*extra, "--asv-index", str(results.parent / "html"))
    done = run_loadkit("check", "--results", str(results), "--json", str(out), *extra)
    document = json.loads(out.read_text()) if out.exists() else {}
    return done.returncode, document, done.stdout, done.stderr


def _series(document: dict) -> dict[str, dict]:
    return {row["name"]: row for row in document["series"]}


def _benchmarks(document: dict) -> list[dict]:
    return [row for row in document["series"] if not row["name"].startswith(MACHINE_ROW)]


@pytest.mark.parametrize("version", FORMATS)
def test_a_code_change_under_every_benchmark_fails_each_of_them(tmp_path, version):
    runs = shared_move(seed=11, factor=1.3)
    results = write_result_set(tmp_path, runs, version)
    write_index(tmp_path, runs)
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 1
    benchmarks = _benchmarks(document)
    assert len(benchmarks) == 12
    assert all(row["failing"] and row["verdict"] == "REGRESSION" for row in benchmarks)
    # Each is listed with its own effect, about the 30 % every one of them moved.
    assert all(20.0 < row["worse_pct"] < 40.0 for row in benchmarks)
    machine = next(r for r in document["series"] if r["name"].startswith(MACHINE_ROW))
    assert machine["failing"] and machine["confidence"] > 0.99
    assert machine["shared_move"]["read_as"] == "code change"
    assert "read as a code change" in stderr


@pytest.mark.parametrize("version", FORMATS)
def test_a_3x_move_after_one_reference_commit_fails_and_says_the_history_is_short(
    tmp_path, version
):
    runs = shared_move(seed=12, reference=1, factor=3.0, within=0.05)
    results = write_result_set(tmp_path, runs, version)
    write_index(tmp_path, runs)
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 1
    assert all(row["failing"] for row in _benchmarks(document))
    machine = next(r for r in document["series"] if r["name"].startswith(MACHINE_ROW))
    assert machine["verdict"] == "REGRESSION" and machine["confidence"] > 0.99
    assert "the history is short (1 reference commit)" in stderr


@pytest.mark.parametrize("version", FORMATS)
def test_a_runner_lottery_that_comes_back_fails_nothing(tmp_path, version):
    runs = runner_lotteries(seed=13)
    results = write_result_set(tmp_path, runs, version)
    write_index(tmp_path, runs)
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 0, stderr
    assert not document["failing"]
    assert "read as a runner lottery" in stderr
    assert "earlier shared moves came back within 3 commits" in stderr


@pytest.mark.parametrize("version", FORMATS)
def test_a_newest_commit_whose_benchmarks_all_failed_fails_the_check(tmp_path, version):
    runs = newest_failed(seed=14)
    results = write_result_set(tmp_path, runs, version)
    write_index(tmp_path, runs)
    code, document, stdout, stderr = _check(results, tmp_path)
    assert code == 1
    dead, judged = runs[-1].commit, runs[-2].commit
    assert document["commit"] == judged
    assert document["failed_run"]["commit"] == dead
    assert len(document["failed_run"]["benchmarks"]) == 10
    first_warning = next(line for line in stderr.splitlines() if line.startswith("warning"))
    assert f"every benchmark failed at {dead[:8]} (10 benchmarks: suite0.Bench0" in first_warning
    assert f"judging {judged[:8]}, the newest commit with results" in first_warning
    assert f"FAILED RUN at {dead[:8]}" in stdout


def test_some_benchmarks_failing_are_named_once_and_the_verdicts_decide(tmp_path):
    failed = ["suite0.Bench0.time_case0", "suite1.Bench1.time_case1"]
    runs = newest_failed(seed=15, failed=failed)
    results = write_result_set(tmp_path, runs, 2)
    write_index(tmp_path, runs)
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 0
    assert document["commit"] == runs[-1].commit
    assert document["failed_at_commit"] == failed
    lines = [line for line in stderr.splitlines() if "failed at" in line]
    assert lines == [
        f"warning: 2 of 10 benchmarks failed at {runs[-1].commit[:8]}: "
        "suite0.Bench0.time_case0, suite1.Bench1.time_case1"
    ]


def test_newer_commits_without_results_are_counted_and_the_measured_one_judged(tmp_path):
    runs = newest_failed(seed=16, failed=[])
    results = write_result_set(tmp_path, runs, 2)
    html = write_index(tmp_path, runs, later=["e" * 40, "f" * 40])
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 0
    assert document["commit"] == runs[-1].commit
    assert document["commit_order"]["newer_unmeasured"] == 2
    said = stderr.replace("\n", " ")
    assert f"2 newer commits in asv index.json ({html / 'index.json'}) have no results" in said
    assert "no results file for this machine; judging" in said


@pytest.mark.parametrize("version", FORMATS)
def test_an_environment_renamed_by_an_added_requirement_is_one_history(tmp_path, version):
    runs = renamed_environment(seed=17, before=12, after=12, step_at=12, factor=1.5)
    results = write_result_set(tmp_path, runs, version)
    write_index(tmp_path, runs)
    code, document, stdout, _ = _check(results, tmp_path)
    rename = runs[12].commit
    rows = document["series"]
    assert len(rows) == 3
    for row in rows:
        assert row["commits"] == 24
        assert row["environment"] == "virtualenv-py3.11-numpy-scipy"
        assert row["environment_changes"] == [
            {
                "commit": rename,
                "index": 12,
                "from": "virtualenv-py3.11-numpy",
                "to": "virtualenv-py3.11-numpy-scipy",
            }
        ]
        step = [cp for cp in row["change_points"] if cp["commit"] == rename]
        assert step and step[0]["worse"] and step[0]["at_environment_change"]
    assert "at the environment change" in stdout
    assert code == 0  # the step is history: the newest commit is judged on the new level


def test_a_changed_pin_starts_another_history(tmp_path):
    runs = renamed_environment(seed=18, before=12, after=12, pinned=True)
    results = write_result_set(tmp_path, runs, 2)
    write_index(tmp_path, runs)
    _, document, _, _ = _check(results, tmp_path)
    rows = _series(document)
    assert len(rows) == 3
    assert all(name.endswith("[virtualenv-py3.11-numpy1.26]") for name in rows)
    assert all(row["commits"] == 12 and not row["environment_changes"] for row in rows.values())


def _digests(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.json"))
    }


def test_old_format_files_are_read_in_memory_and_left_untouched(tmp_path):
    runs = shared_move(seed=19)
    old = write_result_set(tmp_path / "old", runs, 1)
    new = write_result_set(tmp_path / "new", runs, 2)
    write_index(tmp_path / "old", runs)
    write_index(tmp_path / "new", runs)
    before = _digests(old)
    code_old, read_old, _, stderr_old = _check(old, tmp_path / "old")
    code_new, read_new, _, _ = _check(new, tmp_path / "new")
    assert _digests(old) == before
    assert "old asv results format" not in stderr_old
    assert (code_old, code_new) == (1, 1)
    # The same numbers, read from either format, give the same verdicts and effects.
    pairs = zip(read_old["series"], read_new["series"], strict=True)
    for a, b in pairs:
        assert (a["name"], a["verdict"], a["commits"]) == (b["name"], b["verdict"], b["commits"])
        assert a["ratio"] == pytest.approx(b["ratio"], rel=1e-9)


def test_an_old_format_file_asv_cannot_migrate_is_the_one_skipped(tmp_path):
    runs = shared_move(seed=20)
    results = write_result_set(tmp_path, runs, 1)
    write_index(tmp_path, runs)
    broken = next((results / "box").glob(f"{runs[0].commit[:8]}-*.json"))
    broken.write_text(json.dumps({"version": 1, "commit_hash": "0" * 40}))
    code, document, _, stderr = _check(results, tmp_path)
    assert code == 1  # the other 13 files still hold the shared move
    assert document["skipped_files"] and broken.name in document["skipped_files"][0]
    assert (
        f"skipped 1 file in box/: in an old asv results format that asv's migration "
        f"cannot read ({broken.name}); left as they are"
    ) in stderr.replace("\n", " ")
