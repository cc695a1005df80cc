"""Reading each round's values back from asv's results files (real asv ``Results``)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from asv import results as asv_results
from asv import runner as asv_runner

from loadkit.asvsuite.compare_run import SideValues, read_round

MACHINE = "box"
COMMIT = "c0ffee" + "0" * 34
BENCHMARKS = {
    "m.T.time_x": {"name": "m.T.time_x", "version": "1", "params": []},
    "m.T.track_y": {"name": "m.T.track_y", "version": "1", "params": []},
    "m.T.time_broken": {"name": "m.T.time_broken", "version": "1", "params": []},
    "m.P.time_p": {"name": "m.P.time_p", "version": "1", "params": [["1", "2"]]},
}


def _run(results_dir: Path, values: dict[str, tuple[list, list | None]]) -> None:
    """One asv run of COMMIT with --append-samples, written the way asv writes it."""
    path = results_dir / MACHINE
    existing = list(
        asv_results.iter_results_for_machine_and_hash(str(results_dir), MACHINE, COMMIT)
    )
    result = (
        existing[0]
        if existing
        else asv_results.Results(
            {"machine": MACHINE}, {}, COMMIT, 0, "3.11", "virtualenv-py3.11", {}
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
            BENCHMARKS[name],
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
    from loadkit.asvsuite.compare_run import append_round, load_rounds

    side = SideValues()
    log = tmp_path / "rounds.jsonl"
    for number, value in enumerate((5.0, 0.0), start=1):
        before = {k: len(v) for k, v in side.rounds.items()}
        _run(tmp_path, {"m.T.track_y": ([value], None), "m.T.time_broken": ([None], None)})
        read_round(tmp_path, MACHINE, COMMIT, side)
        append_round(log, "base", number, COMMIT, before, side)
    again = load_rounds(log)["base"]
    assert again.rounds["m.T.track_y"] == [5.0, 0.0]  # a zero is a value
    assert again.failed["m.T.time_broken"] == 2
    assert again.seen == side.seen
