"""Reading asv results for one machine, through asv's own ``asv.results``.

asv's file format has changed before (``asv update`` migrates old files) and will again;
going through ``Results.load`` keeps us on whatever format the installed asv reads, and
older files are migrated in memory by asv's own steps
(:mod:`~loadkit.history.sources.old_results`). Files are read one at a time and each
``Results`` is dropped once its numbers are in the
:class:`~loadkit.history.sources.point_table.PointTable`, so memory holds numbers, not
asv's objects. A file that asv cannot read — corrupt JSON, a foreign JSON file, another
machine's results, an old format asv cannot migrate — is skipped and reported once per
kind of reason.
Files are only ever opened for reading.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asv import results as asv_results
from asv import util

from loadkit.common.errors import UsageError
from loadkit.common.parallel import map_in_processes, worker_count
from loadkit.history.sources.environment_lines import line_of
from loadkit.history.sources.old_results import MigratedResults, OldFormatError, migrate
from loadkit.history.sources.point_table import PointTable, RunOutcome, SeriesKey
from loadkit.history.sources.skipped_files import SkipKind, SkippedFile, classify, summary_lines
from loadkit.history.stats.series import Series
from loadkit.runs.declarations import Tracked, read_sidecar

_NOT_RESULTS = {"machine.json", "benchmarks.json"}
BENCHMARKS_JSON = "benchmarks.json"

# The asv command that (re)writes benchmarks.json without running anything.
DISCOVER_COMMAND = "asv run --bench just-discover"
_UNDESCRIBED = (
    "parameter names and units are unknown (parameters show as p0, p1, …, values without "
    f"units); `{DISCOVER_COMMAND}` in the benchmark project writes it"
)

_UNREADABLE = (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError)

# Below this many files a second process costs more than it saves.
PARALLEL_FROM = 400


@dataclass
class MachineResults:
    """Everything read for one machine, before commits are put in order."""

    machine: str
    table: PointTable
    metadata: dict[str, dict]
    skipped: list[SkippedFile] = field(default_factory=list)
    benchmarks_note: str | None = None

    @property
    def commit_dates(self) -> dict[str, int | None]:
        """Each commit with readable results and the date asv stored for it."""
        return self.table.dates

    def warnings(self) -> list[str]:
        """What the reader has to say: skipped files by kind, a missing or stale
        benchmarks.json."""
        lines = summary_lines(self.skipped, self.machine)
        if self.benchmarks_note:
            return [*lines, self.benchmarks_note]
        described = self.metadata.keys()
        unknown = sorted({key.benchmark for key in self.table.keys} - described)
        if unknown:
            shown = ", ".join(unknown[:3]) + (", …" if len(unknown) > 3 else "")
            lines.append(
                f"{BENCHMARKS_JSON} does not describe {len(unknown):,} of the benchmarks with "
                f"results ({shown}): {_UNDESCRIBED}"
            )
        return lines

    def history(self, order: list[str]) -> MachineHistory:
        """The series over ``order`` (commits with results, oldest first)."""
        present = [commit for commit in order if commit in self.table.dates]
        return MachineHistory(
            machine=self.machine,
            series=self.table.series(present, self.metadata),
            commits=present,
            skipped=[item.describe() for item in self.skipped],
        )


@dataclass
class MachineHistory:
    """All series for one machine, plus the files that could not be read."""

    machine: str
    series: list[Series]
    commits: list[str]
    skipped: list[str] = field(default_factory=list)


def list_machines(results_dir: Path) -> list[str]:
    """Machine folders (those holding a ``machine.json``) in a results directory."""
    if not results_dir.is_dir():
        raise UsageError(f"results directory {results_dir} does not exist")
    return sorted(p.parent.name for p in results_dir.glob("*/machine.json"))


def benchmark_metadata(results_dir: Path) -> tuple[dict[str, dict], str | None]:
    """``benchmarks.json`` (versions, units, parameter names), or nothing and why."""
    path = results_dir / BENCHMARKS_JSON
    if not path.is_file():
        return {}, f"no {BENCHMARKS_JSON} in {results_dir}: {_UNDESCRIBED}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return {}, f"cannot read {path} ({exc}): {_UNDESCRIBED}"
    return {key: value for key, value in data.items() if isinstance(value, dict)}, None


def with_declared_directions(
    metadata: dict[str, dict], declared: Mapping[str, Tracked]
) -> dict[str, dict]:
    """asv's metadata plus each benchmark's declared ``direction`` (asv drops custom
    attributes, so ``loadkit bench`` keeps them in :data:`loadkit.suite.SIDECAR`);
    undeclared benchmarks keep what asv wrote, and their names decide."""
    merged = dict(metadata)
    for name, tracked in declared.items():
        merged[name] = {**metadata.get(name, {}), "direction": tracked.direction}
    return merged


def _param_label(names: list[str], values: tuple[str, ...]) -> str:
    if not values:
        return ""
    labels = names if len(names) == len(values) else [f"p{i}" for i in range(len(values))]
    return "(" + ", ".join(f"{n}={v}" for n, v in zip(labels, values, strict=True)) + ")"


def _requirements(result: object) -> Mapping[str, object]:
    """The requirements asv stored with a run (it keeps them without a public accessor);
    anything else reads as none, and the environment is then a line of its own."""
    found = getattr(result, "requirements", None)
    if found is None:
        found = getattr(result, "_requirements", None)
    return found if isinstance(found, Mapping) else {}


class _Collector:
    """Moves one ``Results`` at a time into a point table."""

    def __init__(self, table: PointTable, metadata: dict[str, dict]) -> None:
        self.table = table
        self.metadata = metadata
        # (benchmark, environment, parameter values) -> series id per combination:
        # the same few hundred answers are wanted for every one of thousands of files.
        self._ids: dict[tuple[str, str, tuple[tuple[str, ...], ...]], list[int]] = {}

    def _series_ids(self, key: str, env: str, params: list[list[str]]) -> list[int]:
        shape = (key, env, tuple(tuple(p) for p in params))
        ids = self._ids.get(shape)
        if ids is None:
            info = self.metadata.get(key, {})
            names = [str(n) for n in info.get("param_names") or []]
            ids = [
                self.table.series_id(SeriesKey(key, _param_label(names, combo), env))
                for combo in itertools.product(*params)
            ]
            self._ids[shape] = ids
        return ids

    def collect(self, result: asv_results.Results | MigratedResults) -> None:
        commit = self.table.commit_id(result.commit_hash, result.date)
        env = str(result.env_name)
        line = line_of(env, _requirements(result))
        versions = result.benchmark_version
        outcome = RunOutcome()
        for key in result.get_all_result_keys():
            wanted = self.metadata.get(key, {}).get("version")
            recorded = versions.get(key)
            if wanted is not None and recorded is not None and wanted != recorded:
                continue  # the benchmark's code changed since: asv drops these too
            params = result.get_result_params(key) or []
            values = result.get_result_value(key, params)
            if all(value is None for value in values):
                outcome.failed.add(key)  # failed (or skipped) for every parameter
                continue
            outcome.measured += 1
            self.table.add(
                self._series_ids(key, line, params),
                commit,
                values,
                result.get_result_samples(key, params),
            )
        self.table.note_run(result.commit_hash, line, env, outcome)


def _load(path: Path, machine: str) -> asv_results.Results | MigratedResults | SkippedFile:
    try:
        result = asv_results.Results.load(str(path), machine_name=machine)
    except util.UserError as exc:
        reason = str(exc).replace(str(path.resolve()), path.name)
        kind = classify(reason)
        if kind is not SkipKind.OLD_FORMAT:
            return SkippedFile(path.name, kind, reason)
        return _load_old(path, machine)
    except _UNREADABLE as exc:
        return SkippedFile(path.name, SkipKind.NOT_RESULTS, f"{type(exc).__name__}: {exc}")
    if not isinstance(result.commit_hash, str):
        return SkippedFile(path.name, SkipKind.NOT_RESULTS, "no commit hash")
    return result


def _load_old(path: Path, machine: str) -> MigratedResults | SkippedFile:
    """An old-format file, migrated in memory; skipped only when asv cannot migrate it."""
    try:
        result = migrate(path)
    except OldFormatError as exc:
        return SkippedFile(path.name, SkipKind.OLD_FORMAT, str(exc))
    except _UNREADABLE as exc:
        return SkippedFile(path.name, SkipKind.OLD_FORMAT, f"{type(exc).__name__}: {exc}")
    if result.params.get("machine") != machine:
        reason = f"{path.name}: machine name is not {machine!r}"
        return SkippedFile(path.name, SkipKind.OTHER_MACHINE, reason)
    if not isinstance(result.commit_hash, str):
        return SkippedFile(path.name, SkipKind.NOT_RESULTS, "no commit hash")
    return result


def _read_files(
    paths: list[Path], machine: str, metadata: dict[str, dict]
) -> tuple[PointTable, list[SkippedFile]]:
    """Read files in order into a new table; what cannot be read is listed, not raised."""
    table = PointTable()
    collector = _Collector(table, metadata)
    skipped: list[SkippedFile] = []
    for path in paths:
        loaded = _load(path, machine)
        if isinstance(loaded, SkippedFile):
            skipped.append(loaded)
            continue
        mark = table.mark()
        try:
            collector.collect(loaded)
        except _UNREADABLE as exc:
            table.rollback(mark)
            skipped.append(
                SkippedFile(path.name, SkipKind.NOT_RESULTS, f"{type(exc).__name__}: {exc}")
            )
    return table, skipped


def default_workers(files: int) -> int:
    """Two processes for a big folder on Linux with two CPUs to spare, else one.

    Parsing JSON holds the interpreter lock, so only processes help; they are forked
    (no re-import; only file names and benchmarks.json go out, tables come back). The
    workers run pure Python: no threads of their own, no numerical libraries.
    """
    return worker_count(files, PARALLEL_FROM, at_most=2)


def read_results(results_dir: Path, machine: str, workers: int | None = None) -> MachineResults:
    """Read every results file of one machine into a point table.

    Files are read in name order, by ``workers`` processes (default: see
    :func:`default_workers`) each taking a contiguous share, so the outcome is the same
    as one process reading them all. Results recorded by an older version of a
    benchmark's code (``benchmarks.json``) are left out, as asv leaves them out of its
    graphs.
    """
    machine_dir = results_dir / machine
    if not (machine_dir / "machine.json").is_file():
        known = ", ".join(list_machines(results_dir)) or "none"
        raise UsageError(f"unknown machine {machine!r} in {results_dir} (known: {known})")
    metadata, note = benchmark_metadata(results_dir)
    metadata = with_declared_directions(metadata, read_sidecar(results_dir))
    paths = sorted(p for p in machine_dir.glob("*.json") if p.name not in _NOT_RESULTS)
    workers = default_workers(len(paths)) if workers is None else workers
    # Each process takes a contiguous share, so the outcome is that of one reading all.
    size = -(-len(paths) // max(1, workers))
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)] or [paths]
    read_chunk = functools.partial(_read_files, machine=machine, metadata=metadata)
    parts = map_in_processes(read_chunk, chunks, workers)
    read = MachineResults(machine, parts[0][0], metadata, benchmarks_note=note)
    for table, skipped in parts:
        if table is not read.table:
            read.table.extend(table)
        read.skipped.extend(skipped)
    return read
