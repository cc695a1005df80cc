"""A tiny asv project in a throwaway git repository, for the comparison and CI tests.

The package's ``WORK`` sets how long its loop runs: a commit that raises it is a real
slowdown in the project's code, which asv installs per commit. Timings use CPU time, so
neighbours on a shared machine move them less; a second benchmark the change does not
touch, a throughput figure (higher is better) and a count that must stay zero (it has no
ratio) stand beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import asv_config, git

PACKAGE = """\
WORK = {work}


def loop():
    total = 0
    for i in range(WORK):
        total += i
    return total
"""
BENCHMARK = """\
import time

import tiny


class Work:
    timer = time.process_time
    number = 2
    repeat = 5
    min_run_count = 5
    rounds = 1
    warmup_time = 0
    timeout = 60

    def time_loop(self):
        tiny.loop()

    def time_steady(self):
        sum(range(30_000))

    def track_loops_per_s(self):
        started = time.process_time()
        for _ in range(3):
            tiny.loop()
        return 3 / (time.process_time() - started)

    track_loops_per_s.unit = "1/s"

    def track_leaked(self):
        return 0.0  # a count that must stay zero: it has no ratio, on either side

    track_leaked.unit = "count"
"""
PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "tiny"
version = "0.1"

[tool.setuptools]
packages = ["tiny"]
"""
CONFIG = asv_config(
    "tiny",
    # The build needs no download: setuptools is in the environment asv makes.
    build_command=[
        "python -m pip wheel --no-deps --no-build-isolation -w {build_cache_dir} {build_dir}"
    ],
)
FAST_WORK = 40_000
SLOW_WORK = 800_000


def commit(repo: Path, message: str, work: int | None = None, note: str | None = None) -> str:
    if work is not None:
        (repo / "tiny" / "__init__.py").write_text(PACKAGE.format(work=work))
    if note is not None:
        (repo / "NOTES.md").write_text(note)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_project(repo: Path) -> str:
    """The project with its first commit; returns that commit's hash."""
    (repo / "tiny").mkdir(parents=True)
    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "__init__.py").write_text("")
    (repo / "benchmarks" / "bench_work.py").write_text(BENCHMARK)
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / "asv.conf.json").write_text(json.dumps(CONFIG, indent=2))
    (repo / ".gitignore").write_text(".asv/\nresults/\nhtml/\nhtml-loadkit/\nsite/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.invalid")
    git(repo, "config", "user.name", "ci")
    return commit(repo, "tiny: a loop", work=FAST_WORK, note="first\n")


def isolated_env(home: Path) -> dict[str, str]:
    """asv keeps machine names in ~/.asv-machine.json: a home of the test's own."""
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(home)}
