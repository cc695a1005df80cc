"""How a comparison is shown: the terminal table, the pull-request comment, the JSON.

The comment is read on a pull request by someone deciding whether to merge, so its
first line is the verdict; the regressions and improvements follow in full, and the
rest (unchanged, inconclusive, and changes of figures the suite does not gate, marked
so) is folded in ``<details>`` so a 90-benchmark suite does not bury them. The JSON has
one entry per benchmark with ``name``, ``verdict`` and ``gated``, as ``check --json``
does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from loadkit.history.stats.compare_rows import Row, Status, counts, exit_code
from loadkit.history.stats.two_sample import FILTER_EFFECT

SCHEMA = "loadkit.compare/1"
# Ends every comment, so CI finds its earlier comment and updates it instead of adding one.
COMMENT_MARKER = "<!-- loadkit compare -->"
UNGATED = "not gated"  # beside the verdict of a benchmark the suite declares informational


@dataclass(frozen=True)
class CompareFacts:
    """What the comparison was, for the headline and the JSON."""

    base: str
    head: str
    rounds: int
    confidence: float
    min_effect: float
    false_discovery: float
    wall_s: float
    scale: str | None = None


def _percent(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value * 100:+.1f}%"


def format_value(value: float, unit: str) -> str:
    """A measurement in its unit; asv's seconds and bytes in readable multiples."""
    if not math.isfinite(value):
        return "—"
    if unit == "seconds":
        for factor, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {suffix}"
        return f"{value:.3g} s"
    if unit == "bytes":
        for factor, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= factor:
                return f"{value / factor:.3g} {suffix}"
        return f"{value:.0f} B"
    shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{shown} {unit}" if unit and unit != "unit" else shown


def change_cell(row: Row) -> str:
    """Head against base (head / base - 1) with its interval."""
    if row.result is None:
        return "—"
    r = row.result
    return f"{_percent(r.ratio - 1)} [{_percent(r.ratio_low - 1)}, {_percent(r.ratio_high - 1)}]"


def confidence_cell(row: Row) -> str:
    return f"{row.result.confidence:.3f}" if row.result is not None else "—"


# Past the effect at which the gate stops judging a benchmark, a detectable effect only
# says "this figure cannot gate here".
SHOWN_EFFECT = FILTER_EFFECT


def effect_text(effect: float) -> str:
    """A detectable effect as a person reads it: 4.2%, or >1000% where the figure is
    too noisy for the number to mean more than that."""
    return f"{effect * 100:.1f}%" if effect <= SHOWN_EFFECT else f">{SHOWN_EFFECT:.0%}"


def detectable_cell(row: Row) -> str:
    return "—" if row.result is None else effect_text(row.result.detectable_effect)


def cells(row: Row) -> list[str]:
    return [
        row.name,
        format_value(row.base_median, row.unit),
        format_value(row.head_median, row.unit),
        change_cell(row),
        confidence_cell(row),
        detectable_cell(row),
        verdict_cell(row),
    ]


def verdict_cell(row: Row) -> str:
    return row.status.value if row.gated else f"{row.status.value} ({UNGATED})"


HEADERS = ["benchmark", "base", "head", "change [interval]", "confidence", "detectable", "verdict"]


def summary_line(rows: Sequence[Row], facts: CompareFacts) -> str:
    """One line: the verdict, the counts, what was compared and how."""
    tally = counts(rows)
    verdict = "REGRESSION" if exit_code(rows) else "PASSED"
    parts = [
        f"{tally[status]} {status.value.lower().replace('_', ' ')}"
        for status in Status
        if tally.get(status)
    ]
    ungated = sum(not row.gated and row.status is Status.REGRESSION for row in rows)
    if ungated:
        parts.append(f"{ungated} of the regressions {UNGATED}")
    return (
        f"{verdict}: {', '.join(parts) or 'no benchmarks'} — {facts.head[:8]} against "
        f"{facts.base[:8]}, {facts.rounds} rounds each, {facts.wall_s / 60:.1f} min "
        f"(confidence {facts.confidence}, effect ≥ {facts.min_effect:.0%}, "
        f"false-discovery rate {facts.false_discovery})"
    )


def text_table(rows: Sequence[Row]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "benchmark" else "right")
    styles = {Status.REGRESSION: "red", Status.BROKEN: "red", Status.IMPROVEMENT: "green"}
    for row in rows:
        style = styles.get(row.status)
        if style and not row.gated and not row.fails:
            style = "yellow"  # a change the suite does not gate
        table.add_row(*cells(row), style=style)
    return table


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---", *["---:"] * (len(HEADERS) - 1)]) + "|",
    ]
    for row in rows:
        values = cells(row)
        values[0] = f"`{values[0]}`"
        lines.append("| " + " | ".join(_escape(v) for v in values) + " |")
    return lines


def markdown(rows: Sequence[Row], facts: CompareFacts) -> str:
    """The pull-request comment: verdict line, regressions, improvements, the rest folded."""
    failing = [r for r in rows if r.fails]
    better = [r for r in rows if r.status is Status.IMPROVEMENT and r.gated]
    rest = [r for r in rows if not r.fails and not (r.gated and r.status is Status.IMPROVEMENT)]
    icon = "❌" if failing else "✅"
    lines = [f"{icon} **loadkit compare** — {summary_line(rows, facts)}", ""]
    if failing:
        lines += [f"### Regressions ({len(failing)})", "", *_markdown_table(failing), ""]
    if better:
        lines += [f"### Improvements ({len(better)})", "", *_markdown_table(better), ""]
    if rest:
        lines += [
            "<details>",
            f"<summary>{len(rest)} other benchmark{'' if len(rest) == 1 else 's'}</summary>",
            "",
            *_markdown_table(rest),
            "",
            "</details>",
            "",
        ]
    lines += [
        "Change is head / base − 1 of the medians of the rounds, with its "
        f"{facts.confidence:.0%} interval; detectable is the worsening found with 80 % power. "
        "Confidence is each benchmark's own; a REGRESSION or IMPROVEMENT must also pass "
        f"the false-discovery step across all {len(rows)} benchmarks (rate "
        f"{facts.false_discovery:g}), so a confident change can still be INCONCLUSIVE.",
        "",
        COMMENT_MARKER,
        "",
    ]
    return "\n".join(lines)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def json_document(rows: Sequence[Row], facts: CompareFacts) -> dict[str, Any]:
    entries = []
    for row in rows:
        r = row.result
        entries.append(
            {
                "name": row.name,
                "verdict": row.status.value,
                "gated": row.gated,
                "unit": row.unit,
                "direction": row.direction.value,
                "base": _number(row.base_median),
                "head": _number(row.head_median),
                "change": _number(r.ratio - 1) if r else None,
                "change_low": _number(r.ratio_low - 1) if r else None,
                "change_high": _number(r.ratio_high - 1) if r else None,
                "confidence": _number(r.confidence) if r else None,
                "p_worse": _number(r.p_worse) if r else None,
                "detectable_effect": _number(r.detectable_effect) if r else None,
                "base_rounds": r.base_rounds if r else None,
                "head_rounds": r.head_rounds if r else None,
                "paired_rounds": r.paired_rounds if r else None,
            }
        )
    return {
        "schema": SCHEMA,
        "base": facts.base,
        "head": facts.head,
        "rounds": facts.rounds,
        "scale": facts.scale,
        "confidence": facts.confidence,
        "min_effect": facts.min_effect,
        "false_discovery": facts.false_discovery,
        "wall_s": round(facts.wall_s, 1),
        "summary": summary_line(rows, facts),
        "exit_code": exit_code(rows),
        "entries": entries,
    }
