"""Reading each round's values back from asv's results files (real asv ``Results``)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from asv import results as asv_results
from asv import runner as asv_runner

from loadkit.asvsuite.compare_run import (
    Commits,
    RunRecord,
    SideValues,
    append_round,
    block_pattern,
    load_rounds,
    read_round,
    selects,
    set_aside_earlier,
    shared_versions,
    suite_blocks,
)

MACHINE = "box"
COMMIT = "c0ffee" + "0" * 34
BENCHMARKS = {
    "m.T.time_x": {"name": "m.T.time_x", "version": "1", "params": []},
    "m.T.track_y": {"name": "m.T.track_y", "version": "1", "params": []},
    "m.T.time_broken": {"name": "m.T.time_broken", "version": "1", "params": []},
    "m.P.time_p": {"name": "m.P.time_p", "version": "1", "params": [["1", "2"]]},
}


def _run(
    results_dir: Path,
    values: dict[str, tuple[list, list | None]],
    commit: str = COMMIT,
    benchmarks: dict[str, dict] = BENCHMARKS,
) -> None:
    """One asv run of ``commit`` with --append-samples, written the way asv writes it."""
    path = results_dir / MACHINE
    existing = list(
        asv_results.iter_results_for_machine_and_hash(str(results_dir), MACHINE, commit)
    )
    result = (
        existing[0]
        if existing
        else asv_results.Results(
            {"machine": MACHINE}, {}, commit, 0, "3.11", "virtualenv-py3.11", {}
        )
    )
    for name, (value, samples) in values.items():
        outcome = asv_runner.BenchmarkResult(
            result=value,
            samples=samples or [None] * len(value),
            number=[1] * len(value) if samples else [None] * len(value),
            errcode=0,
            stderr="",
            profile=None,
        )
        result.add_result(
            benchmarks[name],
            outcome,
            started_at=datetime.datetime.now(datetime.UTC),
            record_samples=True,
            append_samples=True,
        )
    path.mkdir(parents=True, exist_ok=True)
    (path / "machine.json").write_text(json.dumps({"machine": MACHINE, "version": 1}))
    result.save(str(results_dir))


def test_each_round_takes_only_the_samples_its_run_added(tmp_path):
    base, head = SideValues(), SideValues()
    shared = {}
    base.ledger = head.ledger = shared  # one commit on both sides: one file
    _run(tmp_path, {"m.T.time_x": ([1.0], [[1.0, 1.1, 0.9]]), "m.T.track_y": ([5.0], None)})
    assert read_round(tmp_path, MACHINE, COMMIT, base)
    _run(tmp_path, {"m.T.time_x": ([2.0], [[2.0, 2.1, 1.9]]), "m.T.track_y": ([6.0], None)})
    assert read_round(tmp_path, MACHINE, COMMIT, head)
    assert base.rounds["m.T.time_x"] == [1.0]
    assert head.rounds["m.T.time_x"] == [2.0]  # not a blend with base's samples
    assert base.rounds["m.T.track_y"] == [5.0] and head.rounds["m.T.track_y"] == [6.0]


def test_failures_parameters_and_missing_files(tmp_path):
    side = SideValues()
    assert not read_round(tmp_path, MACHINE, COMMIT, side)  # nothing written yet
    _run(
        tmp_path,
        {
            "m.T.time_broken": ([None], None),
            "m.P.time_p": ([1.0, 2.0], [[1.0, 1.0], [2.0, 2.0]]),
        },
    )
    assert read_round(tmp_path, MACHINE, COMMIT, side)
    assert side.failed == {"m.T.time_broken": 1}
    assert side.rounds["m.P.time_p(1)"] == [1.0] and side.rounds["m.P.time_p(2)"] == [2.0]
    assert {"m.T.time_broken", "m.P.time_p(1)", "m.P.time_p(2)"} <= side.seen


def test_rounds_are_kept_and_read_back(tmp_path):
    side = SideValues()
    log = tmp_path / "rounds.jsonl"
    for number, value in enumerate((5.0, 0.0), start=1):
        before = {k: len(v) for k, v in side.rounds.items()}
        _run(tmp_path, {"m.T.track_y": ([value], None), "m.T.time_broken": ([None], None)})
        taken = read_round(tmp_path, MACHINE, COMMIT, side, number)
        append_round(log, RunRecord("base", number, COMMIT, "m"), before, side, taken)
    again = load_rounds(log)["base"]
    assert again.rounds["m.T.track_y"] == [5.0, 0.0]  # a zero is a value
    assert again.round_ids["m.T.track_y"] == [1, 2]
    assert again.failed["m.T.time_broken"] == 2
    assert again.seen == side.seen


def test_a_block_takes_only_its_own_benchmarks(tmp_path):
    """asv's results file keeps the other blocks' last values: a block's run must not
    count them as this round's, nor call them failed."""
    side = SideValues()
    log = tmp_path / "rounds.jsonl"
    _run(tmp_path, {"m.T.track_y": ([5.0], None), "m.P.time_p": ([1.0, 2.0], None)})
    only_t = selects(block_pattern("m", "T\\."))
    assert only_t("m.T.track_y") and not only_t("m.P.time_p")
    before: dict[str, int] = {}
    taken = read_round(tmp_path, MACHINE, COMMIT, side, 1, only_t)
    assert taken == {"m.T.track_y"}
    append_round(log, RunRecord("base", 1, COMMIT, "m"), before, side, taken)
    _run(tmp_path, {"m.P.time_p": ([3.0, 4.0], None)})  # the next block's run
    before = {k: len(v) for k, v in side.rounds.items()}
    taken = read_round(tmp_path, MACHINE, COMMIT, side, 1, selects("^m\\.P\\."))
    append_round(log, RunRecord("base", 1, COMMIT, "m"), before, side, taken)
    assert side.rounds == {"m.T.track_y": [5.0], "m.P.time_p(1)": [3.0], "m.P.time_p(2)": [4.0]}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["seen"] == ["m.T.track_y"] and lines[0]["failed"] == []
    assert sorted(lines[1]["values"]) == ["m.P.time_p(1)", "m.P.time_p(2)"]
    assert lines[1]["failed"] == []


def test_blocks_are_the_suites_modules(tmp_path):
    for name in ("bench_a.py", "bench_b.py", "__init__.py", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "data").mkdir()
    assert suite_blocks(tmp_path) == ["bench_a", "bench_b", "pkg"]
    assert block_pattern(None, None) is None and selects(None)("anything")
    assert not selects(block_pattern("bench_a", None))("bench_ab.T.time_x")


def test_an_earlier_comparison_of_the_same_commits_is_set_aside(tmp_path):
    commits = Commits(COMMIT, COMMIT, tmp_path / "pair")
    assert set_aside_earlier(commits) is None  # nothing yet
    _run(commits.results, {"m.T.track_y": ([5.0], None)})
    commits.rounds.write_text('{"side": "base"}\n', encoding="utf-8")
    archive = set_aside_earlier(commits)
    assert archive is not None and archive.parent == commits.folder
    assert not commits.results.exists() and not commits.rounds.exists()
    assert (archive / "rounds.jsonl").read_text(encoding="utf-8") == '{"side": "base"}\n'
    side = SideValues()  # the next comparison starts from nothing
    assert not read_round(commits.results, MACHINE, COMMIT, side)


def test_a_benchmark_counts_as_unchanged_only_when_both_commits_ran_its_version(tmp_path):
    head = "beef" + "0" * 36
    changed = {**BENCHMARKS, "m.T.track_y": {**BENCHMARKS["m.T.track_y"], "version": "2"}}
    both = {"m.T.time_x": ([1.0], None), "m.T.track_y": ([5.0], None)}
    _run(tmp_path, both)
    _run(tmp_path, both, head, changed)
    _run(tmp_path, {"m.P.time_p": ([1.0, 2.0], None)}, head, changed)  # the head's alone
    assert shared_versions(tmp_path, MACHINE, COMMIT, head) == {"m.T.time_x": "1"}
    assert shared_versions(tmp_path, MACHINE, COMMIT, COMMIT) == {
        "m.T.time_x": "1",
        "m.T.track_y": "1",
    }
    assert shared_versions(tmp_path, MACHINE, COMMIT, "f" * 40) == {}  # no run of the head


def test_every_parameter_combination_of_an_informational_benchmark_is_left_ungated():
    from loadkit.asvsuite.compare import informational_keys
    from loadkit.runs.declarations import GATED, INFORMATIONAL, Tracked

    compile_ms = Tracked(
        "bench_wasm.WasmThroughput.track_compile_ms",
        "wasm",
        "compile_ms",
        "ms",
        "lower_is_better",
        ("scale",),
        role=INFORMATIONAL,
        why="the host's speed decides it",
    )
    speedup = Tracked(
        "bench_wasm.WasmSpeedupBySize.track_speedup_ratio",
        "wasm",
        "speedup_ratio_{document}",
        "x",
        "higher_is_better",
        ("scale", "document"),
        role=GATED,
    )
    keys = {
        "bench_wasm.WasmThroughput.track_compile_ms('quick')",
        "bench_wasm.WasmThroughput.track_compile_ms('full')",
        "bench_wasm.WasmSpeedupBySize.track_speedup_ratio('quick', '1mb')",
        "bench_wasm.WasmParse.time_wasm('1mb')",
    }
    assert informational_keys(keys, [compile_ms, speedup]) == {
        "bench_wasm.WasmThroughput.track_compile_ms('quick')",
        "bench_wasm.WasmThroughput.track_compile_ms('full')",
    }
    assert informational_keys(keys, []) == frozenset()  # a foreign suite: all gated
