"""Trend plots as inline SVG text: a sparkline per row and the full plot on demand.

SVG written as text costs microseconds per series where a raster plot costs a tenth of a
second and a file, so a page of a thousand series builds in seconds and draws in the
browser at any zoom. Long histories are folded into at most a few hundred buckets (the
median of the medians, the extremes of the samples): a plot a few hundred pixels wide
cannot show more, and the page stays small.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence

import numpy as np

from loadkit.history.present import check_table as tables
from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.scoring import SeriesScore

VERDICT_COLOUR = {
    Verdict.REGRESSION: "#c0392b",
    Verdict.IMPROVEMENT: "#27ae60",
    Verdict.NO_CHANGE: "#7f8c8d",
    Verdict.INCONCLUSIVE: "#d68910",
}
_CHANGE_COLOUR = "#8e44ad"
SPARK_BUCKETS = 60
DETAIL_BUCKETS = 360


def bucket_bounds(count: int, buckets: int) -> np.ndarray:
    """Start indices of at most ``buckets`` nearly equal runs covering ``count`` items,
    plus ``count`` at the end."""
    parts = max(1, min(count, buckets))
    return np.unique(np.linspace(0, count, parts + 1).round().astype(int))


def bucket_medians(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    return np.array([np.median(values[a:b]) for a, b in itertools.pairwise(bounds)])


class _Scale:
    """Commit index and value to pixels; the value range padded so a flat line sits mid."""

    def __init__(self, count: int, low: float, high: float, box: tuple[float, ...]) -> None:
        left, top, right, bottom = box
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = 0.0, 1.0
        if high <= low:
            pad = abs(high) * 0.05 or 1.0
            low, high = low - pad, high + pad
        self.count, self.low, self.high = count, low, high
        self.left, self.top, self.right, self.bottom = left, top, right, bottom

    def x(self, index: float) -> float:
        if self.count <= 1:
            return (self.left + self.right) / 2
        return self.left + (self.right - self.left) * index / (self.count - 1)

    def y(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return self.bottom - (self.bottom - self.top) * share


def _polyline(xs: Sequence[float], ys: Sequence[float]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def _verdict_colour(score: SeriesScore) -> str:
    return VERDICT_COLOUR[score.verdict]


def sparkline(score: SeriesScore, width: int = 120, height: int = 24) -> str:
    """The whole history in a few dozen points, change points as ticks, the newest
    commit as a dot in the verdict's colour."""
    centres = score.series.centres
    count = centres.size
    bounds = bucket_bounds(count, SPARK_BUCKETS)
    medians = bucket_medians(centres, bounds)
    # Each bucket sits at its middle commit, so marks by commit index line up with it.
    middles = (bounds[:-1] + bounds[1:] - 1) / 2.0
    scale = _Scale(count, float(medians.min()), float(medians.max()), (2, 3, width - 4, height - 3))
    xs = [scale.x(m) for m in middles]
    ys = [scale.y(v) for v in medians]
    parts = [
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="trend over {count} commits">'
    ]
    for cp in score.change_points:
        x = scale.x(cp.index - 0.5)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="{_CHANGE_COLOUR}" '
            'stroke-width="1" stroke-dasharray="2,1"/>'
        )
    for shift in score.recent_shifts:
        x = scale.x(shift.index - 0.5)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" stroke="{_CHANGE_COLOUR}" '
            'stroke-width="1"/>'
        )
    if len(xs) > 1:
        parts.append(
            f'<polyline points="{_polyline(xs, ys)}" fill="none" stroke="#2c3e50" '
            'stroke-width="1.2"/>'
        )
    last_y = scale.y(float(centres[-1]))
    parts.append(
        f'<circle cx="{scale.x(count - 1):.1f}" cy="{last_y:.1f}" r="2.5" '
        f'fill="{_verdict_colour(score)}"/></svg>'
    )
    return "".join(parts)


def _spread(measurements: Sequence[np.ndarray], bounds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Lowest and highest sample in each bucket of commits."""
    lows = np.array([float(np.min(values)) for values in measurements])
    highs = np.array([float(np.max(values)) for values in measurements])
    starts = bounds[:-1]
    return np.minimum.reduceat(lows, starts), np.maximum.reduceat(highs, starts)


def detail_plot(score: SeriesScore, width: int = 760, height: int = 240) -> str:
    """The full plot: medians, the spread of the samples, the reference segment the
    gate compared with, change points (dashed; recent shifts solid), the drift line
    over its window, and the newest commit in the verdict's colour."""
    series = score.series
    centres = series.centres
    count = centres.size
    bounds = bucket_bounds(count, DETAIL_BUCKETS)
    medians = bucket_medians(centres, bounds)
    lows, highs = _spread(series.measurements, bounds)
    middles = (bounds[:-1] + bounds[1:] - 1) / 2.0
    box = (112.0, 10.0, width - 12.0, height - 34.0)
    scale = _Scale(count, float(lows.min()), float(highs.max()), box)
    left, top, right, bottom = box
    unit = series.unit
    out = [
        f'<svg class="detail" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="full history of {html.escape(series.name)}">',
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'fill="none" stroke="#ccc"/>',
    ]
    if count > 1:
        x0 = max(left, scale.x(score.reference_start - 0.5))
        x1 = min(right, scale.x(count - 1.5))
        out.append(
            f'<rect class="reference" x="{x0:.1f}" y="{top}" width="{max(0.0, x1 - x0):.1f}" '
            f'height="{bottom - top}" fill="#3498db" fill-opacity="0.1">'
            f"<title>reference: {tables.effect_text(score)}</title></rect>"
        )
    spread = "".join(
        f"M{scale.x(m):.1f} {scale.y(lo):.1f}V{scale.y(hi):.1f}"
        for m, lo, hi in zip(middles, lows, highs, strict=True)
        if hi > lo
    )
    if spread:
        out.append(
            f'<path class="spread" d="{spread}" stroke="#95a5a6" stroke-width="2" '
            'stroke-opacity="0.6"/>'
        )
    commits = series.commits
    for cp in score.change_points:
        out.append(
            _change_line(
                scale,
                cp.index,
                commits[cp.index],
                cp.ratio,
                cp.confidence,
                top,
                bottom,
                dashed=True,
            )
        )
    for shift in score.recent_shifts:
        out.append(
            _change_line(
                scale,
                shift.index,
                commits[shift.index],
                shift.gate.ratio,
                shift.gate.confidence,
                top,
                bottom,
                dashed=False,
            )
        )
    if score.drift is not None and count >= score.drift.window:
        out.append(_drift_line(score, scale))
    if count > 1:
        xs = [scale.x(m) for m in middles]
        out.append(
            f'<polyline class="median" points="{_polyline(xs, [scale.y(v) for v in medians])}" '
            'fill="none" stroke="#2c3e50" stroke-width="1.5"/>'
        )
    cx, cy = scale.x(count - 1), scale.y(float(centres[-1]))
    out.append(
        f'<path class="newest" d="M{cx:.1f} {cy - 5:.1f}l5 5l-5 5l-5 -5z" '
        f'fill="{_verdict_colour(score)}"><title>{commits[-1][:8]}: '
        f"{tables.value_text(float(centres[-1]), unit)} — {tables.verdict_text(score)}"
        "</title></path>"
    )
    label = 'font-size="11" fill="#555"'
    out += [
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end" {label}>'
        f"{html.escape(tables.value_text(scale.high, unit))}</text>",
        f'<text x="{left - 4}" y="{bottom}" text-anchor="end" {label}>'
        f"{html.escape(tables.value_text(scale.low, unit))}</text>",
        f'<text x="{left}" y="{bottom + 14}" {label}>{commits[0][:8]}</text>',
        f'<text x="{right}" y="{bottom + 14}" text-anchor="end" {label}>{commits[-1][:8]}'
        f" ({count} commits)</text>",
        _legend(left, height - 4),
        "</svg>",
    ]
    return "".join(out)


def _change_line(
    scale: _Scale,
    index: int,
    commit: str,
    ratio: float,
    confidence: float,
    top: float,
    bottom: float,
    dashed: bool,
) -> str:
    x = scale.x(index - 0.5)
    # Labels sit right of the line, or left of it near the right edge.
    anchor, text_x = ("end", x - 3) if x > scale.right - 48 else ("start", x + 3)
    dash = ' stroke-dasharray="4,3"' if dashed else ""
    what = "change point" if dashed else "recent shift"
    text = f"{tables.percent(ratio)} at {commit[:8]}"
    return (
        f'<g class="change"><line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" '
        f'stroke="{_CHANGE_COLOUR}" stroke-width="1.2"{dash}/>'
        f'<text x="{text_x:.1f}" y="{top + 10}" text-anchor="{anchor}" font-size="10" '
        f'fill="{_CHANGE_COLOUR}">'
        f"{tables.percent(ratio)}</text>"
        f"<title>{what}: {text} (confidence {tables.confidence_text(confidence)})</title></g>"
    )


def _drift_line(score: SeriesScore, scale: _Scale) -> str:
    """The trend over the drift window, through the window's median at its middle."""
    drift = score.drift
    assert drift is not None
    centres = score.series.centres
    count = centres.size
    start = count - drift.window
    middle = (start + count - 1) / 2.0
    anchor = float(np.median(centres[start:]))
    growth = 1.0 + drift.pct_per_commit / 100.0
    if growth <= 0.0:
        return ""
    ends = [anchor * growth ** (i - middle) for i in (start, count - 1)]
    ys = [min(max(scale.y(v), scale.top), scale.bottom) for v in ends]
    return (
        f'<line class="drift" x1="{scale.x(start):.1f}" y1="{ys[0]:.1f}" '
        f'x2="{scale.x(count - 1):.1f}" y2="{ys[1]:.1f}" stroke="#e67e22" stroke-width="1.5" '
        f'stroke-dasharray="6,3"><title>drift {tables.drift_text(score)} %/commit over the '
        f"last {drift.window} commits</title></line>"
    )


def _legend(left: float, baseline: float) -> str:
    items = (
        ("#2c3e50", "median"),
        ("#95a5a6", "sample spread"),
        ("#3498db", "reference"),
        (_CHANGE_COLOUR, "change point"),
        ("#e67e22", "drift"),
    )
    parts, x = [], left
    for colour, name in items:
        parts.append(
            f'<rect x="{x:.0f}" y="{baseline - 8}" width="10" height="8" fill="{colour}"/>'
            f'<text x="{x + 13:.0f}" y="{baseline}" font-size="10" fill="#555">{name}</text>'
        )
        x += 20 + 6.2 * len(name)
    return "".join(parts)
