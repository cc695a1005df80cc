"""Presenting scores: the worst-first rich table and the JSON document.

Kept apart from the statistics so the numbers can be tested without a terminal, and
apart from the commands so the report page shows exactly the same table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from loadkit.history.stats.machine_level import MACHINE_PREFIX
from loadkit.history.stats.scoring import SeriesScore, change_is_worse

CHECK_SCHEMA = "loadkit.check/2"
MACHINE_NOTE = (
    "Effects are relative to the machine: each benchmark's newest commit and reference "
    "are compared after taking out what it feels of the shift all benchmarks of its "
    "environment and unit share at each commit (a slow runner); the rows "
    f"'{MACHINE_PREFIX} …' judge that shift itself."
)
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


def confidence_text(confidence: float) -> str:
    """Three decimals, and no false certainty: a confidence is never shown as 1."""
    return ">0.999" if confidence > 0.999 else f"{confidence:.3f}"


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
        f"{_short(commits[cp.index])} {percent(cp.ratio)} ({confidence_text(cp.confidence)})"
        for cp in score.change_points
    ]
    parts += [
        f"{_short(commits[shift.index])} {percent(shift.gate.ratio)} "
        f"({confidence_text(shift.gate.confidence)}, recent)"
        for shift in score.recent_shifts
    ]
    return "; ".join(parts) or "—"


def drift_text(score: SeriesScore) -> str:
    """Trend in %/commit with its interval; the confidence when it counts as real."""
    drift = score.drift
    if drift is None:
        return "—"
    text = f"{drift.pct_per_commit:+.2f} [{drift.pct_low:+.2f}, {drift.pct_high:+.2f}]"
    return f"{text} ({confidence_text(drift.confidence)})"


def detectable_text(score: SeriesScore) -> str:
    if score.gate is None or not math.isfinite(score.gate.detectable_effect):
        return "∞"
    if score.gate.detectable_effect > 10.0:
        return ">1000%"
    return f"{100.0 * score.gate.detectable_effect:.1f}%"


CHECK_COLUMNS = (
    "benchmark",
    "verdict",
    "effect [CI]",
    "conf.",
    "detectable",
    "change points",
    "drift %/commit",
)


def verdict_text(score: SeriesScore) -> str:
    """The verdict, with ✗ when it fails the check."""
    return score.verdict.value + (" ✗" if score.failing else "")


def score_cells(score: SeriesScore) -> tuple[str, str, str, str, str]:
    """The check table's figures for one series, after its name and verdict: the page
    prints the same cells, so both always say the same thing."""
    return (
        effect_text(score),
        confidence_text(score.gate.confidence) if score.gate else "—",
        detectable_text(score),
        change_points_text(score),
        drift_text(score),
    )


def outcome_text(
    failing: Sequence[str], commit: str, confidence: float, min_effect: float, fdr: float
) -> str:
    """The check's closing line: which series fail at ``commit``, or that none does."""
    if not failing:
        return f"no regression at {_short(commit)} reaches the required confidence and effect"
    return (
        f"REGRESSION at {_short(commit)} (confidence ≥ {confidence}, effect ≥ {min_effect:.0%}, "
        f"false discoveries ≤ {fdr:.0%}): {', '.join(failing)}"
    )


_UNIT_SCALES = {
    "seconds": ((1.0, "s"), (1e-3, "ms"), (1e-6, "μs"), (1e-9, "ns")),
    "bytes": ((2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "B")),
}


def value_text(value: float | None, unit: str) -> str:
    """A measured value in its unit, scaled to read at a glance (``1.23 ms``). Zero is a
    value like any other; only a missing one reads "no result"."""
    if value is None or not math.isfinite(value):
        return "no result"
    scales = _UNIT_SCALES.get(unit, ())
    if value == 0.0:
        return f"0 {scales[0][1] if scales else unit}".rstrip()
    for scale, short in scales:
        if abs(value) >= scale or scale == scales[-1][0]:
            return f"{value / scale:.3g} {short}"
    number = f"{value:,.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
    return f"{number} {unit}".rstrip()


_RIGHT = {"effect [CI]", "conf.", "detectable", "drift %/commit"}


def check_table(scores: Sequence[SeriesScore], title: str) -> Table:
    """The check table, rows in the order given (callers sort worst first)."""
    table = Table(title=title, show_lines=False)
    for column in CHECK_COLUMNS:
        if column == "benchmark":
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, justify="right" if column in _RIGHT else "left")
    for score in scores:
        verdict = score.verdict.value
        table.add_row(
            escape(score.series.name),
            f"[{_VERDICT_STYLE[verdict]}]{verdict_text(score)}[/]",
            *score_cells(score),
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
        "machine_shift": _number(math.exp(score.machine_shift)),
        "noise_scale": _number(gate.noise_scale) if gate else None,
        "noise_df": _number(gate.noise_df) if gate else None,
        "prior_series": score.prior_series,
        "change_points": [
            {
                "commit": commits[cp.index],
                "index": cp.index,
                "ratio": _number(cp.ratio),
                "ratio_ci": [_number(cp.ratio_low), _number(cp.ratio_high)],
                "confidence": _number(cp.confidence),
                "p_value": _number(cp.p_value),
                "worse": change_is_worse(cp, series.direction),
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
