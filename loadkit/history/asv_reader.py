"""Reading asv results for one machine into series, through asv's own ``asv.results``.

asv's file format has changed before (``asv update`` migrates old files) and will again;
going through ``Results.load`` keeps us on whatever format the installed asv reads. A
file that asv cannot read — corrupt JSON, a foreign JSON file, another machine's
results, an old format — is skipped with a warning naming it. Files are only ever
opened for reading.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from asv import results as asv_results
from asv import util

from loadkit.errors import UsageError
from loadkit.history.direction import infer_direction
from loadkit.history.series import Series

_NOT_RESULTS = {"machine.json", "benchmarks.json"}
_SUMMARY_KEYS = ("ci_99_a", "ci_99_b", "q_25", "q_75", "repeat", "number")


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


def _benchmark_metadata(results_dir: Path, warn: Callable[[str], None]) -> dict[str, dict]:
    """``benchmarks.json`` (units, parameter names), or nothing if absent or unreadable."""
    path = results_dir / "benchmarks.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warn(f"skipping {path}: {exc}")
        return {}
    return {key: value for key, value in data.items() if isinstance(value, dict)}


def _param_label(names: list[str], values: tuple[str, ...]) -> str:
    if not values:
        return ""
    labels = names if len(names) == len(values) else [f"p{i}" for i in range(len(values))]
    return "(" + ", ".join(f"{n}={v}" for n, v in zip(labels, values, strict=True)) + ")"


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _load(path: Path, machine: str, warn: Callable[[str], None]) -> asv_results.Results | None:
    try:
        return asv_results.Results.load(str(path), machine_name=machine)
    except util.UserError as exc:
        reason = str(exc).replace(str(path.resolve()), path.name)
        warn(f"skipping {path}: {reason}")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        warn(f"skipping {path}: not an asv results file ({type(exc).__name__}: {exc})")
    return None


def read_machine(
    results_dir: Path,
    machine: str,
    commit_order: list[str] | None,
    warn: Callable[[str], None],
) -> MachineHistory:
    """Build one series per benchmark, parameter combination and environment.

    ``commit_order`` lists full hashes oldest first (see ``commit_order``); results for
    commits outside it are left out, as asv's branch graphs leave them out, and so are
    results recorded by an older version of a benchmark's code (``benchmarks.json``). Without an
    order, commits are ordered by the commit date asv stored.
    """
    machine_dir = results_dir / machine
    if not (machine_dir / "machine.json").is_file():
        known = ", ".join(list_machines(results_dir)) or "none"
        raise UsageError(f"unknown machine {machine!r} in {results_dir} (known: {known})")
    metadata = _benchmark_metadata(results_dir, warn)

    loaded: list[asv_results.Results] = []
    skipped: list[str] = []

    def skip(message: str) -> None:
        skipped.append(message)
        warn(message)

    for path in sorted(machine_dir.glob("*.json")):
        if path.name in _NOT_RESULTS:
            continue
        result = _load(path, machine, skip)
        if result is not None and isinstance(result.commit_hash, str):
            loaded.append(result)

    if commit_order is None:
        by_date = sorted(loaded, key=lambda r: (r.date or 0, r.commit_hash))
        order = list(dict.fromkeys(r.commit_hash for r in by_date))
    else:
        present = {r.commit_hash for r in loaded}
        order = [c for c in commit_order if c in present]
    position = {commit: i for i, commit in enumerate(order)}
    environments = {r.env_name for r in loaded if r.commit_hash in position}

    points: dict[tuple[str, str, str], dict[int, tuple[np.ndarray, dict]]] = {}
    for result in loaded:
        index = position.get(result.commit_hash)
        if index is None:
            continue
        for key in result.get_all_result_keys():
            wanted = metadata.get(key, {}).get("version")
            recorded = result.benchmark_version.get(key)
            if wanted is not None and recorded is not None and wanted != recorded:
                continue  # the benchmark's code changed since: asv drops these too
            param_names = [str(n) for n in metadata.get(key, {}).get("param_names") or []]
            _collect(result, key, index, param_names, points)

    series = []
    for (key, label, env), by_commit in sorted(points.items()):
        info = metadata.get(key, {})
        unit = str(info.get("unit") or "")
        name = key + label + (f" [{env}]" if len(environments) > 1 else "")
        indices = sorted(by_commit)
        series.append(
            Series(
                name=name,
                commits=[order[i] for i in indices],
                measurements=[by_commit[i][0] for i in indices],
                direction=infer_direction(key, unit, info.get("direction")),
                unit=unit,
                summaries=[by_commit[i][1] for i in indices],
            )
        )
    return MachineHistory(machine=machine, series=series, commits=order, skipped=skipped)


def _collect(
    result: asv_results.Results,
    key: str,
    index: int,
    names: list[str],
    points: dict[tuple[str, str, str], dict[int, tuple[np.ndarray, dict]]],
) -> None:
    """Add one benchmark's values (all parameter combinations) at one commit."""
    params = result.get_result_params(key) or []
    values = result.get_result_value(key, params)
    samples = result.get_result_samples(key, params)
    stats = result.get_result_stats(key, params)
    for offset, combo in enumerate(itertools.product(*params)):
        value = values[offset] if offset < len(values) else None
        if not _finite(value):
            continue
        raw = samples[offset] if samples and offset < len(samples) else None
        kept = [float(s) for s in raw or [] if _finite(s)]
        measurement = np.array(kept) if kept else np.array([float(value)])
        summary = {"median": float(value)}
        stat = stats[offset] if stats and offset < len(stats) else None
        if isinstance(stat, dict):
            summary.update({k: float(stat[k]) for k in _SUMMARY_KEYS if _finite(stat.get(k))})
        label = _param_label(names, tuple(combo))
        points.setdefault((key, label, result.env_name), {})[index] = (measurement, summary)
