"""The pure rules behind ``check`` on hard histories: environment lines, the judged
commit, shared moves read as code changes or runner lotteries, old formats migrated in
memory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from loadkit.history.sources.environment_lines import line_of
from loadkit.history.sources.judged_commit import judged_commit
from loadkit.history.sources.old_results import OldFormatError, migrate
from loadkit.history.sources.point_table import RunOutcome
from loadkit.history.stats.shared_moves import MoveKind, find_shared_move, sign_test

# --- environment lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "requirements", "line"),
    [
        ("virtualenv-py3.11-numpy", {"numpy": ""}, "virtualenv-py3.11"),
        ("virtualenv-py3.11-numpy-scipy", {"numpy": "", "scipy": None}, "virtualenv-py3.11"),
        ("virtualenv-py3.11-numpy1.26", {"numpy": "1.26"}, "virtualenv-py3.11-numpy1.26"),
        ("conda-py3.11-python", {"python": ""}, "conda-py3.11"),
        (
            "conda-py3.12-pip+pyfma-setuptools_scm-xarray2024.1",
            {"pip+pyfma": "", "setuptools_scm": "", "xarray": "2024.1"},
            "conda-py3.12-xarray2024.1",
        ),
        ("virtualenv-py3.10", {}, "virtualenv-py3.10"),
    ],
)
def test_an_environment_line_drops_only_unpinned_requirements(name, requirements, line):
    assert line_of(name, requirements) == line


def test_a_requirement_named_like_part_of_another_is_taken_out_whole():
    name = "virtualenv-py3.11-numpy-numpydoc1.6"
    assert line_of(name, {"numpy": "", "numpydoc": "1.6"}) == "virtualenv-py3.11-numpydoc1.6"
    assert line_of("virtualenv-py3.11-numpydoc", {"numpy": ""}) == "virtualenv-py3.11-numpydoc"


# --- the judged commit ------------------------------------------------------------------


def test_a_newest_commit_without_values_is_named_and_the_one_before_judged():
    outcomes = {"c3": RunOutcome(failed={"b.x", "b.y"}, measured=0)}
    judged = judged_commit(["c1", "c2", "c3"], {"c1", "c2"}, outcomes)
    assert judged is not None
    assert (judged.commit, judged.failed_run) == ("c2", "c3")
    assert judged.failed_run_benchmarks == ("b.x", "b.y")
    assert judged.notes[0].startswith("every benchmark failed at c3 (2 benchmarks: b.x, b.y)")


def test_some_failed_benchmarks_are_one_note_and_no_failed_run():
    outcomes = {"c2": RunOutcome(failed={"b.y"}, measured=3)}
    judged = judged_commit(["c1", "c2"], {"c1", "c2"}, outcomes)
    assert judged is not None and judged.failed_run is None
    assert judged.notes == ["1 of 4 benchmarks failed at c2: b.y"]


def test_newer_commits_of_the_order_source_are_counted():
    judged = judged_commit(["c1", "c2"], {"c1", "c2"}, {}, newer_unmeasured=1, order_detail="git")
    assert judged is not None and judged.commit == "c2"
    assert judged.notes == [
        "1 newer commit in git has no results file for this machine; judging c2, the newest "
        "commit with results"
    ]


def test_nothing_measured_judges_nothing():
    assert judged_commit(["c1"], set(), {"c1": RunOutcome(failed={"b"})}) is None


# --- shared moves -----------------------------------------------------------------------


def _history(steady: int, moves: dict[int, float], newest: float, spread: float = 0.005):
    generator = np.random.default_rng(3)
    shifts = spread * generator.standard_normal(steady + 1)
    shares = np.zeros(steady + 1)
    for index, size in moves.items():
        shifts[index] = size
        shares[index] = 1.0
    shifts[-1], shares[-1] = newest, 1.0
    return [f"c{i}" for i in range(steady + 1)], shifts, shares


def test_a_move_of_a_steady_group_is_a_code_change():
    move = find_shared_move(*_history(13, {}, math.log(1.3)))
    assert move is not None and move.kind is MoveKind.CODE
    assert (move.commit, move.reference, move.lotteries) == ("c13", 13, 0)
    assert move.size == pytest.approx(math.log(1.3))


def test_a_group_that_swung_and_came_back_before_plays_the_lottery():
    move = find_shared_move(*_history(30, {5: 0.3, 17: -0.25, 18: -0.25}, math.log(1.3)))
    assert move is not None and move.kind is MoveKind.LOTTERY and move.lotteries == 2


def test_a_move_that_held_past_the_revert_window_is_a_code_change_despite_lotteries():
    commits, shifts, shares = _history(30, {5: 0.3, 17: -0.25}, 0.3)
    shifts[-4:], shares[-4:] = 0.3, 1.0
    move = find_shared_move(commits, shifts, shares)
    assert move is not None and move.kind is MoveKind.CODE and move.persisted == 4


@pytest.mark.parametrize(("factor", "kind"), [(1.5, MoveKind.LOTTERY), (3.0, MoveKind.CODE)])
def test_after_one_reference_commit_only_a_move_of_2x_or_more_is_a_code_change(factor, kind):
    move = find_shared_move(*_history(1, {}, math.log(factor)))
    assert move is not None and move.kind is kind and move.short_history
    assert "the history is short" in move.describe("g") or kind is MoveKind.LOTTERY


def test_a_move_within_the_groups_own_swings_is_not_a_shared_move():
    assert find_shared_move(*_history(20, {}, 0.01, spread=0.01)) is None
    commits, shifts, shares = _history(20, {}, 0.3)
    shares[-1] = 0.5  # half the benchmarks moved: not a shared move
    assert find_shared_move(commits, shifts, shares) is None


def test_twelve_benchmarks_of_twelve_one_way_is_a_sign_test_of_one_in_4096():
    moves = np.log(np.linspace(1.25, 1.35, 12))
    median, low, high, p_slower, p_faster = sign_test(moves, 0.95)
    assert p_slower == pytest.approx(1 / 4096) and p_faster == pytest.approx(1.0)
    assert low < median < high and math.exp(low) > 1.25


# --- old formats ------------------------------------------------------------------------


def _v1(tmp_path, results):
    document = {
        "results": results,
        "params": {"machine": "box", "python": "3.8"},
        "requirements": {"numpy": ""},
        "commit_hash": "a" * 40,
        "date": 1,
        "env_name": "virtualenv-py3.8-numpy",
        "python": "3.8",
        "benchmark_version": {"s.time_a": "1", "s.time_p": "1"},
        "version": 1,
    }
    path = tmp_path / "aaaaaaaa-virtualenv-py3.8-numpy.json"
    path.write_text(json.dumps(document))
    return path


def test_a_format_1_file_is_migrated_in_memory_and_left_as_it_was(tmp_path):
    path = _v1(
        tmp_path,
        {
            "s.time_a": {"result": [2.0], "stats": [{"ci_99": [1.9, 2.1]}], "samples": [[2, 2]]},
            "s.time_p": {"result": [1.0, None], "params": [["1", "2"]], "stats": [None, None]},
        },
    )
    before = path.read_bytes()
    migrated = migrate(path)
    assert path.read_bytes() == before
    assert migrated.commit_hash == "a" * 40 and migrated.env_name == "virtualenv-py3.8-numpy"
    assert migrated.requirements == {"numpy": ""}
    assert migrated.get_result_value("s.time_a", []) == [2.0]
    assert migrated.get_result_samples("s.time_a", []) == [[2, 2]]
    assert migrated.get_result_value("s.time_p", [["1", "2"]]) == [1.0, None]
    assert migrated.benchmark_version["s.time_p"] == "1"


@pytest.mark.parametrize(
    "content", ['{"version": 2, "results": {}}', '{"version": 1}', "{not json", "[1, 2]"]
)
def test_what_is_not_an_old_file_asv_can_migrate_is_an_old_format_error(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(OldFormatError):
        migrate(path)
