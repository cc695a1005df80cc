"""The run report's target checks, read back for the history page.

On the first run a history has one commit and nothing to compare with; what the run
report measured against its targets is then the most useful thing the page can show.
The report is read leniently: a missing file is no section, an unreadable one a note.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TargetCheck:
    workload: str
    metric: str
    op: str
    target: float
    value: float | None
    passed: bool


@dataclass(frozen=True)
class RunTargets:
    """The target checks of one run report, and whether the run passed."""

    path: Path
    commit: str | None
    created: str
    passed: bool
    checks: list[TargetCheck]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_run_report(document: object, path: Path) -> RunTargets:
    """The target checks of a ``loadkit.report/1`` document; ValueError if it is none."""
    if not isinstance(document, dict) or not isinstance(document.get("workloads"), dict):
        raise ValueError("not a loadkit run report (no workloads)")
    checks = []
    for workload, entry in document["workloads"].items():
        for check in entry.get("checks", []) if isinstance(entry, dict) else []:
            if not isinstance(check, dict):
                continue
            target = _number(check.get("target"))
            if target is None:
                continue
            checks.append(
                TargetCheck(
                    workload=str(workload),
                    metric=str(check.get("metric", "?")),
                    op=str(check.get("op", "?")),
                    target=target,
                    value=_number(check.get("value")),
                    passed=bool(check.get("passed")),
                )
            )
    commit = document.get("commit")
    return RunTargets(
        path=path,
        commit=commit if isinstance(commit, str) else None,
        created=str(document.get("created", "")),
        passed=bool(document.get("passed")),
        checks=checks,
    )


def read_run_targets(path: Path) -> tuple[RunTargets | None, str | None]:
    """(targets, None), (None, why it could not be read), or (None, None) if absent."""
    if not path.is_file():
        return None, None
    try:
        return parse_run_report(json.loads(path.read_text(encoding="utf-8")), path), None
    except (OSError, ValueError) as exc:
        return None, f"run report {path} not shown: {exc}"
