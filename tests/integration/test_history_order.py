"""Commit order from every source ``check`` knows, on a real git repository, and the
reader's one-line warnings.

The project's history is built so that the stored dates lie about the order:

    main:    A(d1) - B(d2) - C(d4) - D(d5) - M(d6) - E(author d0.5, committed d7)
    feature:          \\- F(d3) ------------/

E is a cherry-pick whose author date (the date asv stores) is older than everything,
so by date it comes first although it is the newest commit on main; F is on the
merged branch, not on main's first-parent line. Results are hand-written asv (version
2) files for every commit; the benchmark value doubles at E, so the order decides
whether the newest commit is a regression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import git
from helpers import run_history_cli as run_cli

from loadkit.history.sources.asv_index import AsvIndex
from loadkit.history.sources.asv_reader import read_results
from loadkit.history.sources.commit_order import order_by_date, order_by_index
from loadkit.history.sources.git_history import pick_branch_ref

MACHINE = "box"
DAY = 86_400
T0 = 1_700_000_000
BENCHMARKS = {
    "bench.Suite.time_work": {"unit": "seconds", "version": "v1", "param_names": []},
    "bench.Sized.time_build": {"unit": "seconds", "version": "v1", "param_names": ["size"]},
}


def _commit(repo: Path, name: str, author_day: float, commit_day: float | None = None) -> str:
    (repo / f"{name}.txt").write_text(name)
    git(repo, "add", "-A")
    dates = {
        "GIT_AUTHOR_DATE": f"@{int(T0 + author_day * DAY)} +0000",
        "GIT_COMMITTER_DATE": f"@{int(T0 + (commit_day or author_day) * DAY)} +0000",
    }
    git(repo, "commit", "-q", "-m", name, env=dates)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The benchmarked project: a git repository with the history in the docstring."""
    repo = tmp_path_factory.mktemp("order") / "proj"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "order@example.invalid")
    git(repo, "config", "user.name", "order")
    hashes = {"A": _commit(repo, "A", 1), "B": _commit(repo, "B", 2)}
    git(repo, "checkout", "-q", "-b", "feature")
    hashes["F"] = _commit(repo, "F", 3)
    git(repo, "checkout", "-q", "main")
    hashes["C"] = _commit(repo, "C", 4)
    hashes["D"] = _commit(repo, "D", 5)
    merge_date = {"GIT_AUTHOR_DATE": f"@{T0 + 6 * DAY} +0000"}
    merge_date["GIT_COMMITTER_DATE"] = merge_date["GIT_AUTHOR_DATE"]
    git(repo, "merge", "-q", "--no-ff", "-m", "M", "feature", env=merge_date)
    hashes["M"] = git(repo, "rev-parse", "HEAD")
    hashes["E"] = _commit(repo, "E", 0.5, commit_day=7)
    dates = {
        name: int(git(repo, "log", "-1", "--format=%at", sha)) * 1000
        for name, sha in hashes.items()
    }
    return {"repo": repo, "hashes": hashes, "dates": dates}


def _result_file(sha: str, date: int, value: float, version: int = 2) -> dict[str, object]:
    samples = [value * (1 + 0.002 * k) for k in (-2, -1, 0, 1, 2)]
    return {
        "commit_hash": sha,
        "env_name": "virtualenv-py3.11",
        "date": date,
        "params": {"machine": MACHINE, "python": "3.11"},
        "python": "3.11",
        "requirements": {},
        "env_vars": {},
        "result_columns": ["result", "params", "version", "samples"],
        "results": {
            "bench.Suite.time_work": [[value], [], "v1", [samples]],
            "bench.Sized.time_build": [
                [value, 2 * value],
                [["10", "20"]],
                "v1",
                [samples, [2 * s for s in samples]],
            ],
        },
        "durations": {},
        "version": version,
    }


def _bench(
    tmp_path: Path,
    project: dict[str, object],
    repo: str,
    names: str = "ABFCDME",
    benchmarks: bool = True,
    branches: list[str] | None = None,
) -> Path:
    """An asv benchmark folder: config, results for ``names``; returns the results dir."""
    bench = tmp_path / "bench"
    machine_dir = bench / "results" / MACHINE
    machine_dir.mkdir(parents=True)
    config: dict[str, object] = {"version": 1, "repo": repo, "html_dir": "html"}
    config["branches"] = ["main"] if branches is None else branches
    if not config["branches"]:
        del config["branches"]
    (bench / "asv.conf.json").write_text(json.dumps(config))
    (machine_dir / "machine.json").write_text(json.dumps({"machine": MACHINE, "version": 1}))
    if benchmarks:
        (bench / "results" / "benchmarks.json").write_text(json.dumps(BENCHMARKS))
    hashes, dates = project["hashes"], project["dates"]
    for position, name in enumerate(names):
        # A percent of scatter between commits, and E twice as slow as the rest.
        value = 2.0 if name == "E" else 1.0 + 0.01 * (position % 3 - 1)
        document = _result_file(hashes[name], dates[name], value)
        path = machine_dir / f"{hashes[name][:8]}-virtualenv-py3.11.json"
        path.write_text(json.dumps(document))
    return bench / "results"


def _write_index(path: Path, project: dict[str, object], names: str) -> Path:
    """An index.json as ``asv publish`` writes it: revisions from ``git rev-list --all
    --date-order --reverse``, for the commits with results."""
    hashes, dates = project["hashes"], project["dates"]
    wanted = {hashes[n]: dates[n] for n in names}
    listed = git(project["repo"], "rev-list", "--all", "--date-order", "--reverse").split()
    revisions = {sha: i for i, sha in enumerate(listed) if sha in wanted}
    document = {
        "project": "proj",
        "revision_to_hash": {str(r): sha for sha, r in revisions.items()},
        "revision_to_date": {str(r): wanted[sha] for sha, r in revisions.items()},
        "hash_length": 8,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def _check(results: Path, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    """``check`` in process with ``--json``: exit code and the JSON document."""
    out = tmp_path / "check.json"
    code = run_cli(["check", "--results", str(results), "--json", str(out), *extra])
    return code, json.loads(out.read_text()) if out.exists() else {}


def _order_line(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("commit order: ")
    return first


# --- git sources ----------------------------------------------------------------------


def test_repo_option_orders_by_first_parent_and_leaves_the_merged_branch_out(
    project, tmp_path, capsys
):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    code, document = _check(results, tmp_path, "--repo", str(project["repo"]))
    out = capsys.readouterr().out
    line = _order_line(out)
    assert f"first-parent history of main in {project['repo']} (--repo)" in line
    assert "6 commits" in line and "1 commit not on main left out" in line
    assert document["commit"] == project["hashes"]["E"]  # the newest, though dated oldest
    assert document["commit_order"] == {
        "source": "repo_option",
        "detail": f"first-parent history of main in {project['repo']} (--repo)",
        "commits": 6,
        "at_risk": 0,
        "left_out": 1,
        "newer_unmeasured": 0,
    }
    assert code == 1 and "bench.Suite.time_work" in document["failing"]


def test_the_configured_local_repository_is_used_when_no_option_names_one(
    project, tmp_path, capsys
):
    relative = os.path.relpath(project["repo"], tmp_path / "bench")
    results = _bench(tmp_path, project, repo=relative)
    _, document = _check(results, tmp_path)
    captured = capsys.readouterr()
    assert "(asv.conf.json repo)" in _order_line(captured.out)
    assert document["commit_order"]["source"] == "config_repo"
    assert document["commit"] == project["hashes"]["E"]
    assert "warning" not in captured.err


def test_a_remote_tracking_branch_stands_in_for_a_missing_local_one(project, tmp_path, capsys):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project["repo"]), str(clone))
    git(clone, "checkout", "-q", "--detach")
    git(clone, "branch", "-q", "-D", "main")
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    _, document = _check(results, tmp_path, "--repo", str(clone))
    line = _order_line(capsys.readouterr().out)
    assert "first-parent history of origin/main" in line and "no local branch main" in line
    assert document["commit"] == project["hashes"]["E"]


def test_without_branches_asv_default_branch_is_followed(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git", branches=[])
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project["repo"]), str(clone))
    git(clone, "config", "init.defaultBranch", "nope")
    assert run_cli(["check", "--results", str(results), "--repo", str(clone)]) == 2
    assert "has no branch 'nope'" in capsys.readouterr().err
    git(clone, "config", "init.defaultBranch", "main")
    assert run_cli(["check", "--results", str(results), "--repo", str(clone)]) == 1
    assert "first-parent history of main" in _order_line(capsys.readouterr().out)


def test_commits_the_clone_does_not_have_are_counted_apart(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo=str(project["repo"]))
    unknown = _result_file("9" * 40, project["dates"]["E"] + DAY * 1000, 1.0)
    (results / MACHINE / "99999999-virtualenv-py3.11.json").write_text(json.dumps(unknown))
    _, document = _check(results, tmp_path)
    line = _order_line(capsys.readouterr().out)
    assert line.endswith("2 commits not on main left out (1 unknown to the repository: fetch it)")
    assert document["commit"] == project["hashes"]["E"]
    assert document["commit_order"]["left_out"] == 2


def test_a_repo_option_that_is_not_a_repository_is_a_usage_error(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo=".")
    assert run_cli(["check", "--results", str(results), "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a git repository" in err[0]


def test_a_commit_off_the_branch_is_named_as_such(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo=str(project["repo"]))
    feature = project["hashes"]["F"][:10]
    assert run_cli(["check", "--results", str(results), "--commit", feature]) == 2
    assert "not on the branch" in capsys.readouterr().err


# --- asv's index.json -------------------------------------------------------------------


def test_index_json_in_the_html_dir_orders_commits_and_a_url_repo_is_not_a_path(
    project, tmp_path, capsys
):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    index = _write_index(tmp_path / "bench" / "html" / "index.json", project, "ABFCDME")
    _, document = _check(results, tmp_path)
    captured = capsys.readouterr()
    assert _order_line(captured.out) == f"commit order: asv index.json ({index}), 7 commits"
    assert document["commit_order"]["source"] == "config_asv_index"
    assert document["commit"] == project["hashes"]["E"]
    assert "https:/" not in captured.err.replace("https://", "")
    assert "cannot run git" not in captured.err and "warning" not in captured.err


def test_asv_index_option_takes_a_file_or_its_html_dir(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    index = _write_index(tmp_path / "published" / "index.json", project, "ABFCDME")
    for given in (index, index.parent):
        _, document = _check(results, tmp_path, "--asv-index", str(given))
        assert document["commit_order"]["source"] == "asv_index_option"
        assert document["commit"] == project["hashes"]["E"]
    assert str(index) in _order_line(capsys.readouterr().out)


def test_results_newer_than_the_index_are_placed_by_date_and_counted(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git", names="ABCDM")
    index = _write_index(tmp_path / "published" / "index.json", project, "ABCDM")
    newer = dict(project["hashes"], G="9" * 40)
    dates = dict(project["dates"], G=project["dates"]["M"] + DAY * 1000)
    document = _result_file(newer["G"], dates["G"], 1.0)
    (results / MACHINE / "99999999-virtualenv-py3.11.json").write_text(json.dumps(document))
    _, checked = _check(results, tmp_path, "--asv-index", str(index))
    line = _order_line(capsys.readouterr().out)
    assert line.endswith("6 commits; 1 commit not in index.json placed by date")
    assert checked["commit"] == newer["G"]
    assert checked["commit_order"]["at_risk"] == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        ('{"hello": 1}', "not an asv index.json"),
    ],
)
def test_a_bad_asv_index_option_is_a_usage_error(project, tmp_path, capsys, content, reason):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    index = tmp_path / "index.json"
    if content is not None:
        index.write_text(content)
    assert run_cli(["check", "--results", str(results), "--asv-index", str(index)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0]


def test_an_unreadable_index_in_the_html_dir_is_a_warning(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    (tmp_path / "bench" / "html").mkdir()
    (tmp_path / "bench" / "html" / "index.json").write_text("{broken")
    _, document = _check(results, tmp_path)
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "trying the next source" in err
    assert document["commit_order"]["source"] == "commit_dates"


# --- dates ------------------------------------------------------------------------------


def test_dates_are_the_last_resort_and_every_commit_is_at_risk(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    _, document = _check(results, tmp_path)
    captured = capsys.readouterr()
    line = _order_line(captured.out)
    assert line.startswith("commit order: commit dates asv recorded")
    assert line.endswith("7 commits; all 7 at risk of being out of order")
    assert document["commit"] == project["hashes"]["M"]  # E's old date puts it first
    assert document["commit_order"]["at_risk"] == 7
    warnings = [w for w in captured.err.splitlines() if "by the dates" in w]
    assert len(warnings) == 1
    assert "all 7 are at risk" in warnings[0]
    assert "--repo" in warnings[0] and "--asv-index" in warnings[0]
    assert "the configured repository is a URL, https://example.invalid/proj.git" in warnings[0]
    assert "https:/example" not in captured.err


def test_report_uses_the_same_order_and_says_it(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo="https://example.invalid/proj.git")
    html = tmp_path / "site"
    argv = ["report", "--results", str(results), "--html", str(html)]
    assert run_cli([*argv, "--repo", str(project["repo"])]) == 0
    captured = capsys.readouterr()
    assert "first-parent history of main" in captured.err
    page = Path(captured.out.strip())
    assert "first-parent history of main" in page.read_text()
    assert project["hashes"]["E"][:8] in page.read_text()


# --- reader warnings --------------------------------------------------------------------


def test_old_format_files_nothing_can_read_are_one_line_and_stay_untouched(
    project, tmp_path, capsys
):
    results = _bench(tmp_path, project, repo=str(project["repo"]), names="ABCDME")
    old = []
    for k in range(5):
        # Format 1 by its label, without what asv's migration needs (no results).
        document = {"version": 1, "commit_hash": f"{k:x}" * 40, "python": "3.11"}
        path = results / MACHINE / f"old{k}-virtualenv-py3.11.json"
        path.write_text(json.dumps(document))
        old.append((path, path.read_bytes()))
    for k in range(4):
        (results / MACHINE / f"junk{k}.json").write_text("{not json")
    _check(results, tmp_path)
    lines = capsys.readouterr().err.splitlines()
    old_lines = [line for line in lines if "old asv results format" in line]
    assert len(old_lines) == 1
    assert "5 files in box/" in old_lines[0] and "migration cannot read" in old_lines[0]
    junk = [line for line in lines if "not valid JSON" in line]
    assert junk == [
        "warning: skipped 4 files in box/: not valid JSON (junk0.json, junk1.json, junk2.json, …)"
    ]
    assert all(path.read_bytes() == content for path, content in old)


def test_a_missing_benchmarks_json_is_one_warning_with_the_fix(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo=str(project["repo"]), benchmarks=False)
    _, document = _check(results, tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "benchmarks.json" in line]
    assert len(lines) == 1
    assert "parameters show as p0, p1" in lines[0]
    assert "asv run --bench just-discover" in lines[0]
    names = {series["name"] for series in document["series"]}
    assert "bench.Sized.time_build(p0=10)" in names


def test_a_benchmarks_json_that_misses_benchmarks_says_which(project, tmp_path, capsys):
    results = _bench(tmp_path, project, repo=str(project["repo"]))
    described = {"bench.Suite.time_work": BENCHMARKS["bench.Suite.time_work"]}
    (results / "benchmarks.json").write_text(json.dumps(described))
    _check(results, tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "benchmarks.json" in line]
    assert len(lines) == 1
    assert (
        "does not describe 1 of the benchmarks with results (bench.Sized.time_build)" in (lines[0])
    )


def test_reading_in_two_processes_gives_what_one_gives(project, tmp_path):
    results = _bench(tmp_path, project, repo=str(project["repo"]))
    (results / MACHINE / "junk.json").write_text("[]")
    one = read_results(results, MACHINE, workers=1)
    two = read_results(results, MACHINE, workers=2)
    order = order_by_date(one.commit_dates)
    assert order == order_by_date(two.commit_dates)
    assert [s.describe() for s in one.skipped] == [s.describe() for s in two.skipped]
    for a, b in zip(one.history(order).series, two.history(order).series, strict=True):
        assert (a.name, a.commits) == (b.name, b.commits)
        assert all((x == y).all() for x, y in zip(a.measurements, b.measurements, strict=True))


# --- pure ordering ------------------------------------------------------------------------


def test_unindexed_commits_go_after_the_last_indexed_commit_dated_no_later():
    # asv's order need not follow the dates: c is dated before b but comes after it.
    index = AsvIndex(Path("index.json"), ["a", "b", "c"], {"a": 10, "b": 30, "c": 20})
    present = {"a": 10, "b": 30, "c": 20, "x": 15, "y": 5, "z": 40, "w": None}
    ordered, placed = order_by_index(index, present)
    assert ordered == ["y", "a", "x", "b", "c", "z", "w"]
    assert placed == ["y", "x", "z", "w"]


def test_branch_refs_prefer_local_then_origin_then_other_remotes():
    refs = ["refs/heads/dev", "refs/remotes/upstream/main", "refs/remotes/origin/feature/main"]
    found = pick_branch_ref("main", refs, ["origin", "upstream"])
    assert found is not None and found.name == "upstream/main" and found.remote
    refs.append("refs/remotes/origin/main")
    assert pick_branch_ref("main", refs, ["origin", "upstream"]).name == "origin/main"
    refs.append("refs/heads/main")
    local = pick_branch_ref("main", refs, ["origin", "upstream"])
    assert local.name == "main" and not local.remote
    assert pick_branch_ref("release", refs, ["origin"]) is None
