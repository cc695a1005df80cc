"""Running two commits in turn with asv, and reading each round's values back.

``asv continuous`` builds both commits' environments and runs them with
``--interleave-rounds``, but asv interleaves only within a benchmark's own ``rounds``:
loadkit's load figures come from one scenario run per asv run (``rounds = 1``), so asv
alone would run base once and head once. ``loadkit compare`` therefore calls ``asv
run --bench BLOCK COMMIT^!`` once per side, block (a module of the suite) and round, in
the order of :func:`loadkit.history.stats.round_plan.round_runs`. The benchmarks are
the current checkout's (asv's ``benchmark_dir``), and ``--record-samples
--append-samples`` keeps every round's samples in asv's own results file.

Each side has an environment of its own: asv reinstalls a commit whenever the one
installed differs, about twenty seconds a time, and runs that switch sides every block
would spend minutes a round on it. The base side uses the project's ``env_dir`` (where
``asv run`` builds); the head side ``.asv/compare/env``, kept for the next comparison.

The runs go to a results folder of their own: copies of ``asv.conf.json`` under
``.asv/compare/<base>-<head>/`` point ``results_dir`` and ``html_dir`` there, so a
comparison never adds files to the project's ``results/`` (the history ``check`` and
the history page read).

asv keeps one value per benchmark and commit (a ``track_`` keeps no samples), so after
every run the results file is read, for the block's benchmarks only (the file keeps
the other blocks' last values): the samples added since the last read are this round's
(their median is its value), and a benchmark without samples gives its value.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from asv import results as asv_results
from asv import util as asv_util

from loadkit.common.errors import UsageError
from loadkit.history.sources.asv_reader import benchmark_metadata

COMPARE_DIR = Path(".asv") / "compare"
# The head side's environments, shared by every comparison of the project.
HEAD_ENV_DIR = COMPARE_DIR / "env"
# The machine name the comparison's results are filed under (its own results folder).
DEFAULT_MACHINE = "compare"


@dataclass(frozen=True)
class Commits:
    """Both commits as full hashes, and the folder their comparison writes to."""

    base: str
    head: str
    folder: Path

    @property
    def config(self) -> Path:
        """asv's settings for the base side."""
        return self.folder / "asv.conf.json"

    @property
    def head_config(self) -> Path:
        """The same with the head side's own environments."""
        return self.folder / "asv.head.conf.json"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    @property
    def rounds(self) -> Path:
        """Every run's values, one JSON line a run (not ``.json``: not asv's)."""
        return self.folder / "rounds.jsonl"


def resolve_commit(repo: Path, name: str) -> str:
    """The full hash of ``name`` (a branch, tag, ``HEAD~1`` or a hash prefix)."""
    if not name or name.startswith("-"):
        raise UsageError(f"unknown commit {name!r}")
    out = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise UsageError(f"unknown commit {name!r} in {repo}")
    return out.stdout.strip()


def compare_folder(project: Path, base: str, head: str) -> Path:
    return project / COMPARE_DIR / f"{base[:8]}-{head[:8]}"


def read_asv_config(path: Path) -> dict:
    """The raw settings (comments allowed, as asv allows them)."""
    try:
        data = asv_util.load_json(str(path), js_comments=True)
    except (OSError, ValueError, asv_util.UserError) as exc:
        raise UsageError(f"cannot read asv config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"asv config {path} is not a JSON object")
    return data


def write_compare_config(settings: Mapping, config: Path, commits: Commits) -> Path:
    """The project's settings with every path absolute and results / html redirected
    into the comparison's folder; a second copy gives the head side its own
    environments."""
    here = config.parent.resolve()

    def absolute(key: str, default: str) -> str:
        value = Path(str(settings.get(key) or default)).expanduser()
        return str(value if value.is_absolute() else here / value)

    derived = dict(settings)
    repo = str(settings.get("repo") or ".")
    if "://" not in repo and "@" not in repo:
        derived["repo"] = absolute("repo", ".")
    derived["benchmark_dir"] = absolute("benchmark_dir", "benchmarks")
    derived["env_dir"] = absolute("env_dir", "env")
    derived["results_dir"] = str(commits.results.resolve())
    derived["html_dir"] = str((commits.folder / "html").resolve())
    commits.folder.mkdir(parents=True, exist_ok=True)
    commits.config.write_text(json.dumps(derived, indent=2) + "\n", encoding="utf-8")
    head = {**derived, "env_dir": str((here / HEAD_ENV_DIR).resolve())}
    commits.head_config.write_text(json.dumps(head, indent=2) + "\n", encoding="utf-8")
    return commits.config


def set_aside_earlier(commits: Commits) -> Path | None:
    """Move an earlier comparison of the same two commits into a dated folder of its
    own. asv appends every run's samples to a commit's results file and the rounds are
    appended to ``rounds.jsonl``: left in place, the first read of this comparison would
    take the earlier one's samples as its own round. Nothing is deleted."""
    earlier = [p for p in (commits.results, commits.rounds) if p.exists()]
    if not earlier:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    archive = commits.folder / f"earlier-{stamp}"
    archive.mkdir(parents=True, exist_ok=True)
    for path in earlier:
        path.rename(archive / path.name)
    return archive


def suite_blocks(benchmark_dir: Path) -> list[str]:
    """The suite's top-level modules and packages, in name order: the blocks a round
    runs in turn (a module of loadkit's suite is one workload)."""
    names = set()
    for entry in benchmark_dir.iterdir():
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            names.add(entry.name)
    return sorted(names)


def block_pattern(block: str | None, bench: str | None) -> str | None:
    """asv's ``--bench`` regex for one block, within the user's own selection."""
    if block is None:
        return bench
    own = f"^{re.escape(block)}\\."
    return own if bench is None else f"^(?={re.escape(block)}\\.)(?=.*?(?:{bench}))"


def selects(pattern: str | None) -> Callable[[str], bool]:
    """Whether a benchmark name is one asv ran for ``pattern`` (asv's ``re.search``)."""
    if pattern is None:
        return lambda _name: True
    compiled = re.compile(pattern)
    return lambda name: compiled.search(name) is not None


@dataclass
class SideValues:
    """Every round's value of every benchmark for one commit.

    ``rounds[key]`` lists one value per round the benchmark gave a number in, and
    ``round_ids[key]`` those rounds' numbers; ``failed[key]`` counts rounds where it
    failed (asv recorded null); ``seen`` every key asv reported at all, so a benchmark
    missing on one side is known.
    ``ledger`` counts the samples already taken from each results file; both sides
    share it, because comparing a commit with itself makes both sides one file."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    round_ids: dict[str, list[int]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    units: dict[str, str] = field(default_factory=dict)
    ledger: dict[tuple[str, str], int] = field(default_factory=dict)

    def absorb(
        self,
        result: asv_results.Results,
        units: Mapping[str, str],
        round_number: int = 0,
        wanted: Callable[[str], bool] = lambda _name: True,
    ) -> set[str]:
        """Take round ``round_number``'s values of the ``wanted`` benchmarks from the
        commit's results file as it is now; the keys taken (values or failures)."""
        taken: set[str] = set()
        for name in result.get_all_result_keys():
            if not wanted(name):
                continue
            params = result.get_result_params(name)
            values = result.get_result_value(name, params)
            samples = result.get_result_samples(name, params)
            combos = list(product(*params)) if params else [()]
            for index, combo in enumerate(combos):
                key = benchmark_key(name, combo)
                self.seen.add(key)
                taken.add(key)
                if name in units:
                    self.units[key] = units[name]
                value = values[index] if index < len(values) else None
                own = samples[index] if samples is not None and index < len(samples) else None
                self._take((str(result.commit_hash), key), value, own, round_number)
        return taken

    def add(self, key: str, value: float, round_number: int) -> None:
        self.rounds.setdefault(key, []).append(value)
        self.round_ids.setdefault(key, []).append(round_number)

    def _take(
        self,
        entry: tuple[str, str],
        value: float | None,
        samples: list[float] | None,
        round_number: int,
    ) -> None:
        key = entry[1]
        if value is None:
            self.failed[key] = self.failed.get(key, 0) + 1
            return
        if isinstance(value, float) and math.isnan(value):
            return  # skipped by the benchmark itself (asv's NaN): not a round value
        if samples:
            taken = self.ledger.get(entry, 0)
            # asv appended this run's samples; fewer than before means it started over.
            fresh = samples[taken:] if len(samples) > taken else samples
            self.ledger[entry] = len(samples)
            usable = [s for s in fresh if s is not None and math.isfinite(s)]
            if usable:
                self.add(key, statistics.median(usable), round_number)
                return
        if math.isfinite(value):  # zero is a value too (no leaked keys, no lost messages)
            self.add(key, float(value), round_number)


@dataclass(frozen=True)
class RunRecord:
    """Which run a line of ``rounds.jsonl`` is: side, round, commit and block."""

    side: str
    round_number: int
    commit: str
    block: str | None = None


def append_round(
    path: Path,
    run: RunRecord,
    before: Mapping[str, int],
    values: SideValues,
    taken: set[str],
) -> None:
    """One JSON line per run in the comparison's folder: the values this run added, the
    benchmarks of its block that failed in it. asv's file keeps only a track_'s last
    value, so this is what lets a comparison be judged again without running it again."""
    added = {
        key: series[-1]
        for key, series in values.rounds.items()
        if key in taken and len(series) > before.get(key, 0)
    }
    line = {
        "side": run.side,
        "round": run.round_number,
        "commit": run.commit,
        "block": run.block,
        "values": added,
        "seen": sorted(taken),
        "failed": sorted(k for k in taken if k not in added),
        "units": {k: u for k, u in values.units.items() if k in taken},
    }
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def load_rounds(path: Path) -> dict[str, SideValues]:
    """The two sides as ``append_round`` recorded them (``base`` and ``head``)."""
    sides = {"base": SideValues(), "head": SideValues()}
    for text in path.read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        side = sides[line["side"]]
        side.seen.update(line["seen"])
        side.units.update(line["units"])
        for key, value in line["values"].items():
            side.add(key, float(value), int(line["round"]))
        for key in line["failed"]:
            side.failed[key] = side.failed.get(key, 0) + 1
    return sides


def benchmark_key(name: str, combo: tuple[str, ...]) -> str:
    """A benchmark's name with its parameter values, as asv prints them."""
    return f"{name}({', '.join(combo)})" if combo else name


def benchmark_units(results: Path) -> dict[str, str]:
    """Each benchmark's unit from the comparison's ``benchmarks.json`` (if there)."""
    metadata, _problem = benchmark_metadata(results)
    return {
        name: str(entry.get("unit") or "") for name, entry in metadata.items() if "unit" in entry
    }


def read_round(
    results: Path,
    machine: str,
    commit: str,
    side: SideValues,
    round_number: int = 0,
    wanted: Callable[[str], bool] = lambda _name: True,
) -> set[str]:
    """Add the run just made for ``commit`` to ``side``: the ``wanted`` benchmarks'
    keys it took, empty when asv wrote nothing for them."""
    units = benchmark_units(results)
    taken: set[str] = set()
    for result in asv_results.iter_results_for_machine_and_hash(str(results), machine, commit):
        taken |= side.absorb(result, units, round_number, wanted)
    return taken


def shared_versions(results: Path, machine: str, base: str, head: str) -> dict[str, str]:
    """Each benchmark's asv version where both commits' own results files record the
    same one. The comparison's ``benchmarks.json`` holds whichever side ran last, so a
    benchmark whose code the head changed is recognised only from the two files."""

    def recorded(commit: str) -> dict[str, str]:
        versions: dict[str, str] = {}
        for result in asv_results.iter_results_for_machine_and_hash(str(results), machine, commit):
            versions |= {k: str(v) for k, v in result.benchmark_version.items() if v is not None}
        return versions

    theirs = recorded(head)
    return {name: v for name, v in recorded(base).items() if theirs.get(name) == v}


@dataclass
class RunClock:
    """Wall time of the whole comparison and of every asv run, for the budget."""

    started: float = field(default_factory=time.monotonic)
    runs: list[tuple[str, float]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def asv_run_args(
    config: Path, machine: str, commit: str, bench: str | None, show_stderr: bool
) -> list[str]:
    args = [
        "run",
        "--config",
        str(config),
        "--machine",
        machine,
        "--record-samples",
        "--append-samples",
    ]
    if show_stderr:
        args.append("--show-stderr")
    if bench:
        args += ["--bench", bench]
    return [*args, f"{commit}^!"]


def run_env(scale: str | None, tmp: Path) -> dict[str, str]:
    """asv's environment: the suite's scale, and asv's temp files in one folder."""
    env = dict(os.environ)
    if scale:
        env["LOADKIT_BENCH_SCALE"] = scale
    env["TMPDIR"] = str(tmp)
    return env
