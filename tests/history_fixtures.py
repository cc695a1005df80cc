"""Small seeded asv result sets, written in asv's own file formats (version 1 and 2).

Histories found in the wild are hard in ways a single synthetic series is not: a commit
that moves every benchmark of a machine at once, a newest commit whose benchmarks all
failed, an environment renamed when a requirement was added, files written by asv 0.4.
These builders write such folders the way asv does (``results/benchmarks.json``,
``results/<machine>/machine.json`` and one file per commit and environment), from a
seed, so a test can run the console script on them and know the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MACHINE = "box"
PYTHON = "3.11"
# asv's result columns in format version 2, in the order asv writes them.
V2_COLUMNS = ["result", "params", "version", "started_at", "duration", "samples"]
BENCHMARK_VERSION = "1"
# One commit a day, from a fixed start (milliseconds, as asv stores dates).
_START_MS = 1_700_000_000_000
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Run:
    """One results file: a commit measured in one environment.

    ``values`` maps each benchmark to its within-run samples; ``None`` is a benchmark
    that failed (asv writes ``null``).
    """

    commit: str
    date: int
    values: dict[str, list[float] | None]
    env_name: str = f"virtualenv-py{PYTHON}"
    python: str = PYTHON
    requirements: dict[str, str] = field(default_factory=dict)


def commit_hashes(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct 40-digit hex hashes."""
    hashes: list[str] = []
    while len(hashes) < count:
        candidate = "".join(f"{b:02x}" for b in rng.integers(0, 256, 20))
        if candidate not in hashes:
            hashes.append(candidate)
    return hashes


def env_name(requirements: dict[str, str], python: str = PYTHON, tool: str = "virtualenv") -> str:
    """The environment name asv gives these requirements: tool, python, then each
    requirement (with its pinned version glued on) in name order."""
    parts = [tool, f"py{python}"]
    parts += [f"{name}{version}" for name, version in sorted(requirements.items())]
    return "-".join(parts)


def benchmark_names(count: int) -> list[str]:
    """Names spread over two suites and a few classes, like a real suite's."""
    return [f"suite{i % 2}.Bench{i % 3}.time_case{i}" for i in range(count)]


def samples_around(
    rng: np.random.Generator, level: float, within: float, count: int
) -> list[float]:
    """``count`` within-run samples around ``level``, spread ``within`` (relative)."""
    return [float(v) for v in level * np.exp(rng.normal(0.0, within, count))]


def steady_levels(
    rng: np.random.Generator,
    benchmarks: list[str],
    commits: int,
    between: float,
    factors: list[float] | None = None,
) -> dict[str, np.ndarray]:
    """Each benchmark's level per commit: its own base times commit-to-commit noise
    (``between``, relative) times ``factors[c]`` shared by every benchmark."""
    shared = np.ones(commits) if factors is None else np.asarray(factors, dtype=float)
    levels = {}
    for name in benchmarks:
        base = float(10 ** rng.uniform(-4, -1))
        levels[name] = base * shared * np.exp(rng.normal(0.0, between, commits))
    return levels


def runs_from_levels(
    rng: np.random.Generator,
    levels: dict[str, np.ndarray],
    hashes: list[str],
    within: float = 0.02,
    samples: int = 5,
    envs: list[tuple[str, dict[str, str]]] | None = None,
) -> list[Run]:
    """One run per commit, ``samples`` samples each (1: a single value, as asv's
    ``--quick``); ``envs[c]`` names the environment and requirements of commit c."""
    runs = []
    for c, commit in enumerate(hashes):
        name, requirements = envs[c] if envs is not None else (env_name({}), {})
        values: dict[str, list[float] | None] = {
            bench: samples_around(rng, float(series[c]), within, samples)
            for bench, series in levels.items()
        }
        runs.append(Run(commit, _START_MS + c * _DAY_MS, values, name, PYTHON, requirements))
    return runs


def _v2_document(run: Run, machine: str) -> dict[str, object]:
    results: dict[str, list[object]] = {}
    for bench, samples in run.values.items():
        if samples is None:
            results[bench] = [[None], [], BENCHMARK_VERSION, None, None, None]
            continue
        median = float(np.median(samples))
        results[bench] = [[median], [], BENCHMARK_VERSION, None, None, [samples]]
    return {
        "commit_hash": run.commit,
        "env_name": run.env_name,
        "date": run.date,
        "params": {"machine": machine, "python": run.python},
        "python": run.python,
        "requirements": run.requirements,
        "env_vars": {},
        "result_columns": V2_COLUMNS,
        "results": results,
        "durations": {},
        "version": 2,
    }


def _v1_document(run: Run, machine: str) -> dict[str, object]:
    """As asv 0.4 wrote it: one object per benchmark, stats and samples in lists."""
    results: dict[str, dict[str, object]] = {}
    for bench, samples in run.values.items():
        if samples is None:
            results[bench] = {"result": [None], "stats": [None], "params": []}
            continue
        median = float(np.median(samples))
        stats = {
            "ci_99": [min(samples), max(samples)],
            "q_25": float(np.percentile(samples, 25)),
            "q_75": float(np.percentile(samples, 75)),
            "repeat": len(samples),
            "number": 1,
        }
        results[bench] = {"result": [median], "stats": [stats], "samples": [samples]}
    return {
        "results": results,
        "params": {"machine": machine, "python": run.python},
        "requirements": run.requirements,
        "commit_hash": run.commit,
        "date": run.date,
        "env_name": run.env_name,
        "python": run.python,
        "profiles": {},
        "started_at": {},
        "ended_at": {},
        "benchmark_version": dict.fromkeys(run.values, BENCHMARK_VERSION),
        "version": 1,
    }


def write_result_set(root: Path, runs: list[Run], version: int = 2, machine: str = MACHINE) -> Path:
    """Write ``runs`` as asv does under ``root/results`` (format ``version``, 1 or 2)
    with ``benchmarks.json`` and ``machine.json``; returns the results folder."""
    if version not in (1, 2):
        raise ValueError(f"asv results format {version} is not written here")
    results = root / "results"
    machine_dir = results / machine
    machine_dir.mkdir(parents=True, exist_ok=True)
    machine_doc = {"machine": machine, "arch": "x86_64", "os": "Linux", "version": 1}
    (machine_dir / "machine.json").write_text(json.dumps(machine_doc))
    names = sorted({bench for run in runs for bench in run.values})
    described: dict[str, object] = {
        name: {
            "name": name,
            "type": "time",
            "unit": "seconds",
            "version": BENCHMARK_VERSION,
            "param_names": [],
            "params": [],
        }
        for name in names
    }
    described["version"] = 2
    (results / "benchmarks.json").write_text(json.dumps(described))
    write = _v1_document if version == 1 else _v2_document
    for run in runs:
        path = machine_dir / f"{run.commit[:8]}-{run.env_name}.json"
        path.write_text(json.dumps(write(run, machine)))
    return results


def write_index(root: Path, runs: list[Run], later: list[str] | None = None) -> Path:
    """asv's published ``index.json`` for ``runs`` (in their order), plus ``later``
    commits the project has but nobody measured; returns its folder."""
    hashes = list(dict.fromkeys(run.commit for run in runs)) + list(later or [])
    index = {
        "project": "proj",
        "revision_to_hash": {str(i): h for i, h in enumerate(hashes)},
        "revision_to_date": {str(i): _START_MS + i * _DAY_MS for i in range(len(hashes))},
        "hash_length": 8,
    }
    html = root / "html"
    html.mkdir(parents=True, exist_ok=True)
    (html / "index.json").write_text(json.dumps(index))
    return html


# --- the hard histories ---------------------------------------------------------------


def shared_move(
    seed: int,
    benchmarks: int = 12,
    reference: int = 13,
    after: int = 1,
    factor: float = 1.3,
    between: float = 0.01,
    within: float = 0.02,
    samples: int = 5,
) -> list[Run]:
    """A steady dedicated machine (``reference`` commits) where one commit moves every
    benchmark by ``factor``; the move holds for the ``after`` commits from it on."""
    rng = np.random.default_rng(seed)
    commits = reference + after
    factors = [1.0] * reference + [factor] * after
    levels = steady_levels(rng, benchmark_names(benchmarks), commits, between, factors)
    return runs_from_levels(rng, levels, commit_hashes(rng, commits), within, samples)


def runner_lotteries(
    seed: int,
    benchmarks: int = 12,
    commits: int = 40,
    flips: tuple[int, ...] = (8, 9, 20, 31),
    size: float = 1.5,
    between: float = 0.02,
    within: float = 0.02,
) -> list[Run]:
    """A shared runner whose whole level flips by ``size`` at the commits ``flips`` and
    back the commit after; the newest commit is one more flip."""
    rng = np.random.default_rng(seed)
    factors = [1.0] * commits
    for index in (*flips, commits - 1):
        factors[index] = size
    levels = steady_levels(rng, benchmark_names(benchmarks), commits, between, factors)
    return runs_from_levels(rng, levels, commit_hashes(rng, commits), within)


def newest_failed(seed: int, failed: list[str] | None = None, commits: int = 10) -> list[Run]:
    """A steady history whose newest commit has a results file where the benchmarks in
    ``failed`` (every one when None) have no value."""
    rng = np.random.default_rng(seed)
    names = benchmark_names(10)
    levels = steady_levels(rng, names, commits, 0.01)
    runs = runs_from_levels(rng, levels, commit_hashes(rng, commits))
    newest = runs[-1]
    dead = set(names if failed is None else failed)
    values = {b: (None if b in dead else v) for b, v in newest.values.items()}
    runs[-1] = Run(newest.commit, newest.date, values, newest.env_name, newest.python)
    return runs


def renamed_environment(
    seed: int,
    before: int = 12,
    after: int = 12,
    step_at: int | None = None,
    factor: float = 1.5,
    pinned: bool = False,
) -> list[Run]:
    """One benchmark suite whose environment gains a requirement after ``before``
    commits (``numpy`` → ``numpy`` and ``scipy``; pinned: ``numpy`` → ``numpy1.26``).
    With ``step_at``, every benchmark slows by ``factor`` from that commit on."""
    rng = np.random.default_rng(seed)
    commits = before + after
    factors = [1.0] * commits
    if step_at is not None:
        factors = [1.0 if c < step_at else factor for c in range(commits)]
    old = {"numpy": ""}
    new = {"numpy": "1.26"} if pinned else {"numpy": "", "scipy": ""}
    envs = [(env_name(old), old)] * before + [(env_name(new), new)] * after
    levels = steady_levels(rng, benchmark_names(3), commits, 0.01, factors)
    return runs_from_levels(rng, levels, commit_hashes(rng, commits), envs=envs)
