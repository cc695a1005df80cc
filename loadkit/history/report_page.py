"""The report page: one trend plot per benchmark and the confidence table, as HTML.

``asv publish`` deletes its whole ``html_dir`` before writing the site
(``asv/commands/publish.py``: ``util.long_path_rmtree(conf.html_dir)``), so a page
inside it would vanish on the next publish. The page therefore lives in a sibling
folder, ``<html_dir>-loadkit/``, next to the asv site; the run report links to it.
Plots are drawn with matplotlib's object API (no pyplot global state, no display).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loadkit.history import tables
from loadkit.history.gate import Verdict
from loadkit.history.paths import PAGE_NAME
from loadkit.history.scoring import SeriesScore

_VERDICT_COLOUR = {
    Verdict.REGRESSION: "#c0392b",
    Verdict.IMPROVEMENT: "#27ae60",
    Verdict.NO_CHANGE: "#7f8c8d",
    Verdict.INCONCLUSIVE: "#d68910",
}


def slug(name: str, used: set[str]) -> str:
    """A file-system-safe, unique file stem for a series name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120] or "series"
    candidate, counter = base, 1
    while candidate in used:
        counter += 1
        candidate = f"{base}_{counter}"
    used.add(candidate)
    return candidate


def draw_trend(score: SeriesScore, path: Path) -> None:
    """Commits on x; samples, medians, change points, reference segment and the gate."""
    series = score.series
    figure = Figure(figsize=(8.0, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, values in enumerate(series.measurements):
        if values.size > 1:
            jitter = np.linspace(-0.15, 0.15, values.size)
            axes.scatter(index + jitter, values, s=4, color="#95a5a6", alpha=0.5, linewidths=0)
    centres = series.centres
    positions = np.arange(centres.size)
    axes.plot(positions, centres, marker="o", markersize=3, color="#2c3e50", label="median")
    if centres.size > 1:
        axes.axvspan(
            score.reference_start - 0.5,
            centres.size - 1.5,
            color="#3498db",
            alpha=0.08,
            label="reference",
        )
    for cp in score.change_points:
        axes.axvline(cp.index - 0.5, color="#8e44ad", linestyle="--", linewidth=1)
        axes.annotate(
            tables.percent(cp.ratio),
            (cp.index - 0.5, float(np.max(centres))),
            fontsize=7,
            color="#8e44ad",
        )
    for shift in score.recent_shifts:
        axes.axvline(shift.index - 0.5, color="#8e44ad", linestyle=":", linewidth=1)
        axes.annotate(
            tables.percent(shift.gate.ratio) + " (recent)",
            (shift.index - 0.5, float(np.max(centres))),
            fontsize=7,
            color="#8e44ad",
        )
    if score.gate is not None:
        colour = _VERDICT_COLOUR[score.gate.verdict]
        axes.scatter(
            [centres.size - 1],
            [centres[-1]],
            s=60,
            marker="D",
            color=colour,
            zorder=5,
            label=f"gate: {score.gate.verdict.value}",
        )
    step = max(1, math.ceil(centres.size / 12))
    ticks = positions[::step]
    axes.set_xticks(ticks, [series.commits[i][:7] for i in ticks], rotation=45, fontsize=7)
    axes.set_ylabel(series.unit or "value")
    axes.set_title(series.name, fontsize=9)
    axes.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
.REGRESSION { color: #c0392b; font-weight: bold; } .IMPROVEMENT { color: #27ae60; }
.INCONCLUSIVE { color: #d68910; } .NO_CHANGE { color: #7f8c8d; }
figure { margin: 1em 0; } img { max-width: 100%; }
"""


def render_page(
    scores: Sequence[SeriesScore],
    out_dir: Path,
    title: str,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``index.html`` and one PNG per series into ``out_dir``; return the page."""
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    rows, figures = [], []
    for score in scores:
        stem = slug(score.series.name, used)
        draw_trend(score, plots / f"{stem}.png")
        verdict = score.verdict.value
        name = html.escape(score.series.name)
        confidence = tables.confidence_text(score.gate.confidence) if score.gate else "—"
        cells = [
            f'<a href="#{stem}">{name}</a>',
            f'<span class="{verdict}">{verdict}{" ✗" if score.failing else ""}</span>',
            html.escape(tables.effect_text(score)),
            confidence,
            html.escape(tables.detectable_text(score)),
            html.escape(tables.change_points_text(score)),
            html.escape(tables.drift_text(score)),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        figures.append(
            f'<figure id="{stem}"><img src="plots/{stem}.png" alt="trend of {name}">'
            f"<figcaption>{name}</figcaption></figure>"
        )
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "benchmark",
            "verdict",
            "effect [CI]",
            "conf.",
            "detectable",
            "change points",
            "drift %/commit",
        )
    )
    notes_html = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{notes_html}"
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{''.join(figures)}</body></html>\n"
    )
    path = out_dir / PAGE_NAME
    path.write_text(page, encoding="utf-8")
    return path
