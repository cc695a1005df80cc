"""The trials a suite's figure is the median of, through a real ``asv run`` and back.

A throwaway repository whose suite declares its figures with loadkit's ``track``: its
``setup_cache`` hands over a figure measured in trials, a plain figure, and an
informational count. asv must record the trials as the figure's samples and their
median as its value; ``loadkit check`` must read the samples (its gate uses them) and
must never fail on the informational count, while the same count declared gated fails.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
from helpers import asv_config, git, run_history_cli

from loadkit.asvsuite.recorded import read_commit
from loadkit.asvsuite.track import discover
from loadkit.history.sources.asv_reader import read_results
from loadkit.runs.declarations import write_sidecar

pytestmark = pytest.mark.slow

MACHINE = "trialbox"
COMMITS = 7
SLOW_FROM = 5
TRIALS = [100.0, 103.0, 98.0, 101.0, 99.0]
SUITE = """\
from loadkit.suite import HIGHER, LOWER, Measured, track

SLOW = {slow}


class Run:
    workload = "fake"
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0

    def setup_cache(self):
        trials = [v / (2 if SLOW else 1) for v in {trials}]
        return Measured(
            {{
                "rate_per_s": sorted(trials)[2],
                "size": 7.0,
                "redeliveries": 400.0 if SLOW else 10.0,
            }},
            {{"rate_per_s": trials}},
        )

    track_rate = track("rate_per_s", "1/s", HIGHER, method="median of trials")
    track_size = track("size", "count", LOWER)
    track_redeliveries = track(
        "redeliveries", "count", LOWER, informational="at-least-once: redelivery is by design"
    )
    track_redeliveries_gated = track("redeliveries", "count", LOWER)
"""
# not "benchmarks": discovery imports the suite as a package, and this process may
# have imported the repository's own suite under that name already
CONFIG = asv_config("trials", benchmark_dir="trialbench")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("trials")
    repo = root / "proj"
    (repo / "trialbench").mkdir(parents=True)
    (root / "home").mkdir()
    env = {**os.environ, "HOME": str(root / "home")}
    (repo / "asv.conf.json").write_text(json.dumps(CONFIG))
    (repo / "trialbench" / "__init__.py").write_text("")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "trials@example.invalid")
    git(repo, "config", "user.name", "trials")
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--yes", "--machine", MACHINE], cwd=repo, env=env, check=True)
    hashes = []
    for index in range(COMMITS):
        suite = SUITE.format(slow=index >= SLOW_FROM, trials=TRIALS)
        (repo / "trialbench" / "bench_trials.py").write_text(suite)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {index}")
        sha = git(repo, "rev-parse", "HEAD")
        hashes.append(sha)
        run = [*asv, "run", "--python=same", f"--set-commit-hash={sha}", "--record-samples"]
        subprocess.run(
            [*run, "--machine", MACHINE],
            cwd=repo,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    write_sidecar(repo / "results", discover(repo / "trialbench"))
    return {"repo": repo, "hashes": hashes}


def test_asv_records_the_trials_as_samples_and_their_median_as_the_value(project):
    results = project["repo"] / "results"
    view = read_commit(results, project["hashes"][0], MACHINE)
    [(_, value)] = view.values("bench_trials.Run.track_rate")
    assert value == statistics.median(TRIALS)
    [(_, size)] = view.values("bench_trials.Run.track_size")
    assert size == 7.0


def test_check_reads_the_trials_back_as_each_commits_measurements(project):
    read = read_results(project["repo"] / "results", MACHINE)
    history = read.history(project["hashes"])
    by_name = {s.benchmark or s.name: s for s in history.series}
    rate = next(s for name, s in by_name.items() if name.endswith("track_rate"))
    assert [sorted(m.tolist()) for m in rate.measurements[:SLOW_FROM]] == [
        sorted(TRIALS)
    ] * SLOW_FROM
    size = next(s for name, s in by_name.items() if name.endswith("track_size"))
    assert not size.has_samples


def test_an_informational_figure_never_fails_a_check_its_gated_twin_does(project, tmp_path):
    out = tmp_path / "check.json"
    results = str(project["repo"] / "results")
    slowdown = project["hashes"][SLOW_FROM]
    code = run_history_cli(
        ["check", "--results", results, "--commit", slowdown, "--json", str(out)]
    )
    document = json.loads(out.read_text())
    failing = set(document["failing"])
    assert code == 1
    assert "bench_trials.Run.track_rate" in failing
    assert "bench_trials.Run.track_redeliveries_gated" in failing
    assert "bench_trials.Run.track_redeliveries" not in failing
    assert document["informational"] == ["bench_trials.Run.track_redeliveries"]
    rate = next(s for s in document["series"] if s["name"] == "bench_trials.Run.track_rate")
    assert rate["used_samples"] is True
