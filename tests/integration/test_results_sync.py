"""``.ci/results-sync``: results kept on a git branch, against a local bare repository.

Two jobs that push at the same moment both land (the second is rejected, fetches the
new tip and tries again, never forcing); the files every job writes are merged by the
stated rule; a push without a fetch is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SYNC = Path(__file__).resolve().parents[2] / ".ci" / "results_sync.py"


def _sync(job: Path, remote: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SYNC), *args, "--remote", str(remote), "--backoff", "0.05"],
        cwd=job,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _git(remote: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True
    ).stdout


def _job(root: Path, name: str, remote: Path) -> Path:
    job = root / name
    job.mkdir()
    done = _sync(job, remote, "fetch")
    assert done.returncode == 0, done.stderr
    return job


def _write_results(job: Path, tag: str, benchmarks: dict) -> None:
    machine = job / "results" / "ci-runner"
    machine.mkdir(parents=True, exist_ok=True)
    (machine / f"{tag}-virtualenv-py3.11.json").write_text(json.dumps({"commit_hash": tag}))
    (machine / "machine.json").write_text(json.dumps({"machine": "ci-runner", "job": tag}))
    (job / "results" / "benchmarks.json").write_text(json.dumps({**benchmarks, "version": 2}))
    lines = "".join(json.dumps({"benchmark": b, "job": tag}) + "\n" for b in benchmarks)
    (job / "results" / "loadkit-suite.jsonl").write_text(lines)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    return bare


@pytest.mark.parametrize("attempt", range(3))
def test_two_concurrent_pushers_both_land(tmp_path, remote, attempt):
    first = _job(tmp_path, "first", remote)
    second = _job(tmp_path, "second", remote)
    _write_results(first, "aaaa1111", {"m.a": {"version": "1", "job": "first"}})
    _write_results(second, "bbbb2222", {"m.b": {"version": "1", "job": "second"}})
    pushes = [
        subprocess.Popen(
            [sys.executable, str(SYNC), "push", "--remote", str(remote), "--backoff", "0.05"],
            cwd=job,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in (first, second)
    ]
    for push in pushes:
        out, err = push.communicate(timeout=120)
        assert push.returncode == 0, out + err
    log = _git(remote, "log", "--format=%s", "benchmark-results").splitlines()
    assert len(log) == 2
    files = set(_git(remote, "ls-tree", "-r", "--name-only", "benchmark-results").split())
    assert {
        "ci-runner/aaaa1111-virtualenv-py3.11.json",
        "ci-runner/bbbb2222-virtualenv-py3.11.json",
    } <= files
    merged = json.loads(_git(remote, "show", "benchmark-results:benchmarks.json"))
    assert set(merged) == {"m.a", "m.b", "version"}  # neither job's benchmarks lost
    suite = _git(remote, "show", "benchmark-results:loadkit-suite.jsonl").splitlines()
    assert {json.loads(line)["benchmark"] for line in suite} == {"m.a", "m.b"}
    # A third runner starts empty and gets both.
    third = _job(tmp_path, "third", remote)
    names = {p.name for p in (third / "results" / "ci-runner").iterdir()}
    assert {"aaaa1111-virtualenv-py3.11.json", "bbbb2222-virtualenv-py3.11.json"} <= names


def test_a_job_pushes_only_its_own_files_and_its_benchmark_entries_win(tmp_path, remote):
    first = _job(tmp_path, "first", remote)
    _write_results(first, "aaaa1111", {"m.a": {"version": "1"}, "m.b": {"version": "1"}})
    assert _sync(first, remote, "push").returncode == 0
    second = _job(tmp_path, "second", remote)
    # The second job ran a newer m.b; its copy of the first job's file is untouched.
    _write_results(second, "bbbb2222", {"m.b": {"version": "2"}})
    (second / "results" / "stray.txt").unlink(missing_ok=True)
    done = _sync(second, remote, "push")
    assert done.returncode == 0, done.stderr
    assert "pushed" in done.stdout
    merged = json.loads(_git(remote, "show", "benchmark-results:benchmarks.json"))
    assert merged["m.a"] == {"version": "1"} and merged["m.b"] == {"version": "2"}
    changed = _git(remote, "show", "--name-only", "--format=", "benchmark-results").split()
    assert "ci-runner/aaaa1111-virtualenv-py3.11.json" not in changed
    # Pushed again: nothing new to commit.
    again = _sync(second, remote, "push")
    assert again.returncode == 0 and "already holds these results" in again.stdout
    assert len(_git(remote, "log", "--format=%H", "benchmark-results").split()) == 2


def test_push_without_a_fetch_is_refused(tmp_path, remote):
    job = tmp_path / "job"
    job.mkdir()
    _write_results(job, "aaaa1111", {"m.a": {}})
    done = _sync(job, remote, "push")
    assert done.returncode == 1
    assert "run `results-sync fetch` before the run" in done.stderr
    assert _git(remote, "branch", "--list").strip() == ""


def test_an_unreachable_remote_is_one_line_and_exit_1(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    done = _sync(job, tmp_path / "no-such-remote.git", "fetch")
    assert done.returncode == 1
    assert done.stderr.startswith("results-sync: error:") and len(done.stderr.splitlines()) >= 1
