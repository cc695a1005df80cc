"""The noise an A/A study measured, kept for the pull-request comparison.

``loadkit bench --aa N`` runs the suite N times on one commit; every difference between
the runs is noise, so each figure's spread is its run-to-run scale known to N − 1
degrees of freedom. A comparison of three rounds knows its own scatter to two, too few
to gate a 15 % change at a 1 % false-alarm rate, and a module's benchmarks are too
unlike (a WASM speedup steadier than a WASM parse time) for the family to stand in. So
every study is kept under ``.asv/aa/<scale>.json`` with the asv version of each
benchmark it measured, and ``loadkit compare`` takes a study's spread as the prior of
each benchmark whose code is still the version the study ran
(:mod:`loadkit.history.stats.two_sample`). A spread between whole runs includes the
host's slow spells, which the comparison's paired rounds cancel: as a prior it errs
towards more noise, not less.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

from loadkit.common.errors import UsageError
from loadkit.history.sources.asv_reader import benchmark_metadata

STUDY_DIR = Path(".asv") / "aa"
_PARAMS = re.compile(r"\(.*\)$")


def study_path(project: Path, scale: str) -> Path:
    """Where the latest study of the project at ``scale`` is kept."""
    return project / STUDY_DIR / f"{scale}.json"


def benchmark_versions(results: Path) -> dict[str, str]:
    """Each benchmark's asv version (a hash of its code) from ``benchmarks.json``."""
    metadata, _problem = benchmark_metadata(results)
    return {
        name: str(entry["version"])
        for name, entry in metadata.items()
        if entry.get("version") is not None
    }


def known_noise(study: Mapping, versions_now: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """(scale, degrees of freedom) of every figure the study measured whose benchmark
    has the same version now. Pure: the study's document and today's versions in."""
    runs = study.get("runs")
    figures = study.get("figures")
    if not isinstance(runs, list) or not isinstance(figures, list) or len(runs) < 2:
        return {}
    versions = study.get("versions") or {}
    df = float(len(runs) - 1)
    out = {}
    for figure in figures:
        name, spread = figure.get("name"), figure.get("spread")
        if not isinstance(name, str) or not isinstance(spread, int | float):
            continue
        benchmark = _PARAMS.sub("", name)
        version = versions.get(benchmark)
        same = version is not None and version == versions_now.get(benchmark)
        if same and math.isfinite(spread) and spread > 0:
            out[name] = (float(spread), df)
    return out


def read_study(path: Path, required: bool) -> dict | None:
    """The study at ``path``; None when absent and not ``required`` (a project that
    never ran one). A study given by the user that cannot be read is a usage error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = f"no A/A study at {path}"
    except (OSError, ValueError) as exc:
        problem = f"cannot read A/A study {path}: {exc}"
    else:
        if isinstance(data, dict) and isinstance(data.get("figures"), list):
            return data
        problem = f"{path} is not an A/A study"
    if required:
        raise UsageError(f"--noise: {problem}")
    return None
