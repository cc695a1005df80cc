"""Presenting scores: the worst-first rich table and the JSON document.

Kept apart from the statistics so the numbers can be tested without a terminal, and
apart from the commands so the report page shows exactly the same table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from loadkit.history.direction import Direction
from loadkit.history.scoring import SeriesScore
from loadkit.history.simulation import Cell, GateCell

CHECK_SCHEMA = "loadkit.check/1"
_VERDICT_STYLE = {
    "REGRESSION": "bold red",
    "IMPROVEMENT": "green",
    "NO_CHANGE": "dim",
    "INCONCLUSIVE": "yellow",
}


def _number(value: float | None) -> float | None:
    """JSON has no infinity: unknown or unbounded figures become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def percent(ratio: float) -> str:
    return "n/a" if not math.isfinite(ratio) else f"{100.0 * (ratio - 1.0):+.1f}%"


def _short(commit: str) -> str:
    return commit[:8]


def effect_text(score: SeriesScore) -> str:
    """Newest over reference as a signed percentage with its interval."""
    gate = score.gate
    if gate is None:
        return "no history"
    low, high = percent(gate.ratio_low), percent(gate.ratio_high)
    return f"{percent(gate.ratio)} [{low}, {high}]"


def change_points_text(score: SeriesScore) -> str:
    """Each change as commit, size and confidence; recent shifts marked."""
    commits = score.series.commits
    parts = [
        f"{_short(commits[cp.index])} {percent(cp.ratio)} ({cp.confidence:.2f})"
        for cp in score.change_points
    ]
    parts += [
        f"{_short(commits[shift.index])} {percent(shift.gate.ratio)} "
        f"({shift.gate.confidence:.2f}, recent)"
        for shift in score.recent_shifts
    ]
    return "; ".join(parts) or "—"


def drift_text(score: SeriesScore) -> str:
    """Trend in %/commit with its interval; the confidence when it counts as real."""
    drift = score.drift
    if drift is None:
        return "—"
    text = f"{drift.pct_per_commit:+.2f} [{drift.pct_low:+.2f}, {drift.pct_high:+.2f}]"
    return f"{text} ({drift.confidence:.2f})"


def detectable_text(score: SeriesScore) -> str:
    if score.gate is None or not math.isfinite(score.gate.detectable_effect):
        return "∞"
    if score.gate.detectable_effect > 10.0:
        return ">1000%"
    return f"{100.0 * score.gate.detectable_effect:.1f}%"


def check_table(scores: Sequence[SeriesScore], title: str) -> Table:
    """The check table, rows in the order given (callers sort worst first)."""
    table = Table(title=title, show_lines=False)
    table.add_column("benchmark", overflow="fold")
    table.add_column("verdict")
    table.add_column("effect [CI]", justify="right")
    table.add_column("conf.", justify="right")
    table.add_column("detectable", justify="right")
    table.add_column("change points")
    table.add_column("drift %/commit", justify="right")
    for score in scores:
        verdict = score.verdict.value
        marker = " ✗" if score.failing else ""
        table.add_row(
            escape(score.series.name),
            f"[{_VERDICT_STYLE[verdict]}]{verdict}{marker}[/]",
            effect_text(score),
            f"{score.gate.confidence:.2f}" if score.gate else "—",
            detectable_text(score),
            change_points_text(score),
            drift_text(score),
        )
    return table


def score_to_dict(score: SeriesScore) -> dict[str, object]:
    """One series' score as JSON-ready data (raw-unit ratios, commits as full hashes)."""
    series = score.series
    commits = series.commits
    gate = score.gate
    drift = score.drift
    return {
        "name": series.name,
        "unit": series.unit,
        "direction": series.direction.value,
        "commits": len(commits),
        "newest_commit": commits[-1] if commits else None,
        "verdict": score.verdict.value,
        "failing": score.failing,
        "regression_detected": score.regression_detected,
        "ratio": _number(gate.ratio) if gate else None,
        "ratio_ci": [_number(gate.ratio_low), _number(gate.ratio_high)] if gate else None,
        "worse_pct": _number(100.0 * score.worse_fraction) if gate else None,
        "confidence": _number(gate.confidence) if gate else None,
        "detectable_effect": _number(gate.detectable_effect) if gate else None,
        "p_worse": _number(gate.p_worse) if gate else None,
        "p_better": _number(gate.p_better) if gate else None,
        "reference_commits": gate.reference_commits if gate else 0,
        "reference_start_commit": commits[score.reference_start] if commits else None,
        "used_samples": gate.used_samples if gate else False,
        "change_points": [
            {
                "commit": commits[cp.index],
                "index": cp.index,
                "ratio": _number(cp.ratio),
                "ratio_ci": [_number(cp.ratio_low), _number(cp.ratio_high)],
                "confidence": _number(cp.confidence),
                "p_value": _number(cp.p_value),
                "worse": (cp.ratio > 1.0) == (series.direction is Direction.LOWER_IS_BETTER),
            }
            for cp in score.change_points
        ],
        "recent_shifts": [
            {
                "commit": commits[shift.index],
                "index": shift.index,
                "verdict": shift.gate.verdict.value,
                "ratio": _number(shift.gate.ratio),
                "confidence": _number(shift.gate.confidence),
            }
            for shift in score.recent_shifts
        ],
        "drift": None
        if drift is None
        else {
            "window": drift.window,
            "pct_per_commit": _number(drift.pct_per_commit),
            "pct_ci": [_number(drift.pct_low), _number(drift.pct_high)],
            "p_value": _number(drift.p_value),
            "confidence": _number(drift.confidence),
            "autocorrelation": _number(drift.autocorrelation),
        },
    }


def calibration_table(cells: Sequence[Cell], title: str) -> Table:
    """loadkit's flag rates beside asv's step_detect on the same simulated series."""
    table = Table(title=title)
    for column in ("scenario", "n", "noise", "series", "loadkit flags", "localized ±1"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    table.add_column("asv step_detect", justify="right")
    table.add_column("requirement")
    table.add_column("met")
    for cell in cells:
        localized = (
            "—" if cell.loadkit_localized_rate is None else f"{cell.loadkit_localized_rate:.1%}"
        )
        table.add_row(
            cell.scenario,
            str(cell.n),
            f"{cell.noise:.0%}",
            str(cell.series),
            f"{cell.loadkit_flag_rate:.1%}",
            localized,
            f"{cell.asv_flag_rate:.1%}",
            cell.requirement,
            "[green]yes[/]" if cell.met else "[bold red]NO[/]",
        )
    return table


def gate_calibration_table(cells: Sequence[GateCell], title: str) -> Table:
    """How often check fails simulated series, and the effect it can detect."""
    table = Table(title=title)
    table.add_column("scenario")
    for column in ("series", "check fails", "REGRESSION verdicts", "median detectable"):
        table.add_column(column, justify="right")
    table.add_column("target")
    table.add_column("met")
    for cell in cells:
        table.add_row(
            cell.scenario,
            str(cell.series),
            f"{cell.check_fail_rate:.1%}",
            f"{cell.regression_rate:.1%}",
            f"{cell.median_detectable_effect:.1%}",
            cell.requirement,
            "[green]yes[/]" if cell.met else "[bold red]NO[/]",
        )
    return table
