"""End to end: a throwaway git repository, real ``asv run`` over 8 commits, then check.

Commit 5 makes the benchmarked work twenty times bigger. The work is counted by a
``track_`` benchmark and timed by a ``time_`` one: on a shared 2-core machine the timing
of a 5-commit history can swing by half between commits (neighbours, CPU frequency), so
the verdicts asserted exactly are the count's, and the timing must point the same way.
``loadkit check`` must name the count as a REGRESSION when judging commit 5 and not
when judging the commits before and after it, skip corrupt and foreign files without
touching them, and the report page must survive ``asv publish``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_history_cli as run_cli

from loadkit.history.commands import report_page_link

pytestmark = pytest.mark.slow

MACHINE = "e2ebox"
COMMITS = 8
SLOW_FROM = 5
BENCHMARK = """\
import time

WORK = {work}


class Work:
    # CPU time, not wall time: other jobs on a shared machine must not move the history.
    timer = time.process_time
    # A few calls per sample smooth out the odd slow call (allocation, page faults).
    number = 3
    repeat = 9
    min_run_count = 9
    rounds = 1
    warmup_time = 0
    timeout = 60

    def time_loop(self):
        total = 0
        for i in range(WORK):
            total += i

    def track_work(self):
        return float(WORK)

    track_work.unit = "iterations"

    def track_items_per_s(self):
        return 1000.0

    track_items_per_s.unit = "items/s"


class Sized:
    # Parameterized, for the names; deterministic, so a busy machine cannot move it.
    params = [100, 200]
    param_names = ["size"]

    def track_size(self, size):
        return float(size)

    track_size.unit = "items"
"""
CONFIG = {
    "version": 1,
    "project": "tiny",
    "repo": ".",
    "branches": ["main"],
    "environment_type": "virtualenv",
    "benchmark_dir": "benchmarks",
    "results_dir": "results",
    "html_dir": "html",
    "env_dir": ".asv/env",
}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _asv(repo: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "asv", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("asv_e2e")
    repo = root / "proj"
    (repo / "benchmarks").mkdir(parents=True)
    env = {**os.environ, "HOME": str(root / "home")}
    (root / "home").mkdir()
    (repo / "asv.conf.json").write_text(json.dumps(CONFIG))
    (repo / "benchmarks" / "__init__.py").write_text("")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "e2e@example.invalid")
    _git(repo, "config", "user.name", "e2e")
    _asv(repo, env, "machine", "--yes", "--machine", MACHINE)
    hashes = []
    for index in range(COMMITS):
        work = 1_000_000 if index >= SLOW_FROM else 50_000
        (repo / "benchmarks" / "bench_work.py").write_text(BENCHMARK.format(work=work))
        (repo / "notes.txt").write_text(f"commit {index}\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {index}")
        sha = _git(repo, "rev-parse", "HEAD")
        hashes.append(sha)
        _asv(
            repo,
            env,
            "run",
            "--python=same",
            f"--set-commit-hash={sha}",
            "--record-samples",
            "--machine",
            MACHINE,
        )
    machine_dir = repo / "results" / MACHINE
    junk = {
        machine_dir / "corrupt.json": b'{"commit_hash": "abc", ',
        machine_dir / "foreign.json": b'{"hello": "not asv"}',
        machine_dir / "notes.txt": b"not json at all",
    }
    for path, content in junk.items():
        path.write_bytes(content)
    return {"repo": repo, "env": env, "hashes": hashes, "junk": junk}


def _check(project: dict[str, object], commit: str, out: Path) -> tuple[int, dict]:
    repo = project["repo"]
    code = run_cli(
        ["check", "--results", str(repo / "results"), "--commit", commit[:10], "--json", str(out)]
    )
    return code, json.loads(out.read_text())


def test_the_slowdown_commit_is_named_a_regression(project, tmp_path, capsys):
    slow = project["hashes"][SLOW_FROM]
    code, document = _check(project, slow, tmp_path / "slow.json")
    captured = capsys.readouterr()
    assert code == 1
    assert document["commit"] == slow
    assert "bench_work.Work.track_work" in document["failing"]
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    assert work["verdict"] == "REGRESSION" and work["ratio"] == pytest.approx(20.0)
    loop = next(s for s in document["series"] if s["name"] == "bench_work.Work.time_loop")
    assert loop["verdict"] in ("REGRESSION", "INCONCLUSIVE")
    assert loop["used_samples"] is True
    assert loop["ratio"] > 5.0  # twenty times the work, whatever the machine did
    assert "REGRESSION" in captured.out
    assert "corrupt.json" in captured.err and "foreign.json" in captured.err
    assert len(document["skipped_files"]) == 2


@pytest.mark.parametrize("index", [2, SLOW_FROM - 1, SLOW_FROM + 1, COMMITS - 1])
def test_commits_without_a_slowdown_pass(project, tmp_path, index):
    code, document = _check(project, project["hashes"][index], tmp_path / "ok.json")
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    assert work["verdict"] == "NO_CHANGE" and not work["failing"]
    # The timing may swing on a busy machine; the count never does, so check fails
    # only if the timing is called a regression, and never by more than it moved.
    loop = next(s for s in document["series"] if s["name"] == "bench_work.Work.time_loop")
    assert code == (1 if loop["failing"] else 0), document["series"]
    assert set(document["failing"]) <= {"bench_work.Work.time_loop"}
    if loop["failing"]:
        assert loop["ratio"] < 3.0


def test_later_commits_name_the_shift_where_it_happened(project, tmp_path):
    _, document = _check(project, project["hashes"][-1], tmp_path / "last.json")
    work = next(s for s in document["series"] if s["name"] == "bench_work.Work.track_work")
    shifts = [c["commit"] for c in work["recent_shifts"] + work["change_points"]]
    assert shifts == [project["hashes"][SLOW_FROM]]
    assert work["verdict"] == "NO_CHANGE"
    throughput = next(s for s in document["series"] if "items_per_s" in s["name"])
    assert throughput["direction"] == "higher_is_better"
    assert throughput["used_samples"] is False  # track_ results keep only the value
    names = {s["name"] for s in document["series"]}
    assert {
        "bench_work.Sized.track_size(size=100)",
        "bench_work.Sized.track_size(size=200)",
    } <= names


def test_junk_files_are_left_untouched(project):
    for path, content in project["junk"].items():
        assert path.read_bytes() == content


def test_usage_errors_exit_2_with_one_line(project, tmp_path, capsys):
    results = str(project["repo"] / "results")
    assert run_cli(["check", "--results", results, "--machine", "nope"]) == 2
    assert run_cli(["check", "--results", results, "--commit", "0000000"]) == 2
    assert run_cli(["check", "--results", str(tmp_path / "missing")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 3
    assert "nope" in errors[0] and "0000000" in errors[1] and "missing" in errors[2]


def test_report_page_survives_asv_publish(project):
    repo = project["repo"]
    html = repo / "html"
    assert run_cli(["report", "--results", str(repo / "results"), "--html", str(html)]) == 0
    link = report_page_link(html)
    assert link is not None
    page = Path(link)
    plots = sorted((page.parent / "plots").glob("*.png"))
    assert len(plots) == 5
    assert all(p.stat().st_size > 5000 for p in plots)
    text = page.read_text()
    assert "bench_work.Work.time_loop" in text and "bench_work.Work.track_work" in text
    assert project["hashes"][SLOW_FROM][:8] in text  # the shift is named
    _asv(repo, project["env"], "publish")
    assert (html / "index.html").is_file()
    assert page.is_file() and report_page_link(html) == link


def test_several_machines_need_a_choice_and_foreign_machine_files_are_skipped(
    project, tmp_path, capsys
):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(project["repo"] / "results", results)
    other = results / "other"
    shutil.copytree(results / MACHINE, other)
    (other / "machine.json").write_text(json.dumps({"machine": "other", "version": 1}))
    assert run_cli(["check", "--results", str(results)]) == 2
    assert "pass --machine" in capsys.readouterr().err
    # The copied files still say they come from e2ebox: none is "other"'s result.
    assert run_cli(["check", "--results", str(results), "--machine", "other"]) == 2
    err = capsys.readouterr().err
    assert f"skipped {COMMITS} files in other/: recorded on another machine" in err
    assert "no readable benchmark results" in err
