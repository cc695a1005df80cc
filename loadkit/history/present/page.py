"""The history page: the gate's verdict first, then every benchmark by suite and class.

``asv publish`` deletes its whole ``html_dir`` before writing the site
(``asv/commands/publish.py``: ``util.long_path_rmtree(conf.html_dir)``), so the page
lives in a sibling folder, ``<html_dir>-loadkit/``, next to the asv site; the run report
links to it.

The page is read every morning, so the first screen answers "did anything get worse?":
the verdict on the newest commit, the counts by verdict and the failing rows with the
same cells ``loadkit check`` prints. Below, one row per benchmark (its parameter
combinations and environments folded in) with the newest value, the change against the
reference and a sparkline of the whole history. The full plot of a flagged series is on
the page; every other one sits in ``series/<name>.js``, loaded when its row is opened
(a script tag works from ``file://`` where a fetch would not), so a thousand series stay
a page of a few megabytes. Nothing is loaded from outside the folder.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from loadkit.common.atomic_file import write_text_atomically
from loadkit.common.site_paths import PAGE_NAME
from loadkit.history.present import check_table as tables
from loadkit.history.present.page_rows import (
    BenchmarkRow,
    Member,
    group_scores,
    history_length,
    is_flagged,
    verdict_counts,
)
from loadkit.history.present.svg_plots import detail_plot, sparkline
from loadkit.history.sources.run_targets import RunTargets
from loadkit.history.stats.scoring import SeriesScore

SERIES_DIR = "series"
# Full plots drawn on the page itself; the rest load on demand.
MAX_INLINE_PLOTS = 40
_CDN = re.compile(r"""<script[^>]+src=["']https?://""", re.IGNORECASE)


@dataclass(frozen=True)
class PageFacts:
    """What the page says besides the scores: whose history, judged how, and the links."""

    title: str
    machine: str
    commit: str
    confidence: float
    min_effect: float
    false_discovery: float
    notes: Sequence[str] = ()
    asv_page: str | None = None  # the asv site's index.html, relative to the page
    asv_needs_internet: bool = False
    run_targets: RunTargets | None = None


def asv_site_needs_internet(asv_index: Path) -> bool:
    """True when the asv site loads scripts from other hosts (asv 0.6 loads jQuery and
    flot from CDNs): opened without internet, it renders blank."""
    try:
        return bool(_CDN.search(asv_index.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def asv_link(asv_page: str, benchmark: str, machine: str) -> str:
    """asv's graph page for a benchmark: ``index.html#<name>?machine=<machine>``, the
    hash its ``parse_hash_string`` reads (``asv/www/asv.js``)."""
    return f"{asv_page}#{quote(benchmark, safe='.')}?machine={quote(machine, safe='')}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em 1.5em; color: #222; }
h1 { font-size: 1.35em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.4em 0 .3em; }
h3 { font-size: 1em; margin: 1em 0 .3em; color: #444; }
.meta { color: #555; margin: 0 0 .8em; }
.gate { font-size: 1.1em; padding: .5em .8em; border-radius: 4px; margin: .5em 0; }
.gate.fail { background: #fdecea; border: 1px solid #c0392b; }
.gate.pass { background: #eafaf1; border: 1px solid #27ae60; }
.gate.first { background: #eef4fb; border: 1px solid #3498db; }
.counts span { display: inline-block; margin-right: 1em; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .2em .5em; text-align: left;
  vertical-align: middle; }
th { background: #f5f5f5; }
table.rows { width: 100%; max-width: 1180px; }
table.rows th:first-child { width: 26%; } table.rows th:nth-child(6) { width: 130px; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.REGRESSION { color: #c0392b; font-weight: bold; } .IMPROVEMENT { color: #27ae60; }
.INCONCLUSIVE { color: #b9770e; } .NO_CHANGE { color: #7f8c8d; }
tr.head td.name { font-weight: 600; } tr.member td.name { padding-left: 1.6em; color: #444; }
tr.failing { background: #fdf2f0; }
tr.detail td { background: #fafafa; }
button.plot { font-size: .8em; cursor: pointer; }
.note { color: #555; font-size: .9em; }
a.asv { font-size: .8em; margin-left: .5em; }
svg text { font-family: system-ui, sans-serif; }
"""

_SCRIPT = """
window.loadkitPlot = function (slug, svg) {
  var box = document.getElementById('plot-' + slug);
  if (box) { box.innerHTML = svg; box.dataset.loaded = '1'; }
};
document.addEventListener('click', function (event) {
  var button = event.target.closest('button.plot');
  if (!button) { return; }
  var slug = button.dataset.slug;
  var row = document.getElementById('detail-' + slug);
  row.hidden = !row.hidden;
  button.setAttribute('aria-expanded', String(!row.hidden));
  var box = document.getElementById('plot-' + slug);
  if (row.hidden || box.dataset.loaded || box.dataset.loading) { return; }
  box.dataset.loading = '1';
  box.textContent = 'loading…';
  var script = document.createElement('script');
  script.src = 'SERIES_DIR/' + slug + '.js';
  script.onerror = function () {
    box.textContent = 'plot file missing: SERIES_DIR/' + slug + '.js (rebuild with loadkit report)';
  };
  document.head.appendChild(script);
});
""".replace("SERIES_DIR", SERIES_DIR)

_ROW_COLUMNS = (
    "benchmark",
    "latest",
    "change vs reference [CI]",
    "conf.",
    "verdict",
    "history",
    "",
)


def _esc(text: object) -> str:
    return html.escape(str(text))


def _summary(
    scores: Sequence[SeriesScore], facts: PageFacts, commits: int, anchors: dict[int, str]
) -> str:
    failing = [s for s in scores if s.failing]
    counts = verdict_counts(scores)
    outcome = tables.outcome_text(
        [s.series.name for s in failing],
        facts.commit,
        facts.confidence,
        facts.min_effect,
        facts.false_discovery,
    )
    if failing:
        banner = f'<p class="gate fail" id="gate">✗ {_esc(outcome)}</p>'
    elif commits <= 1:
        banner = (
            '<p class="gate first" id="gate">First results: this machine has one commit, so '
            "there is nothing to compare with yet. Below are the values this commit "
            "measured; verdicts start with the second commit.</p>"
        )
    else:
        banner = f'<p class="gate pass" id="gate">✓ {_esc(outcome)}</p>'
    chips = "".join(
        f'<span class="{v.value}" data-verdict="{v.value}">{v.value} '
        f'<b class="count">{n}</b></span>'
        for v, n in counts.items()
    )
    parts = [f'<section id="summary">{banner}<p class="counts">{chips}</p>']
    if failing:
        header = "".join(f"<th>{_esc(c)}</th>" for c in tables.CHECK_COLUMNS)
        rows = []
        for score in failing:
            cells = [
                f'<a href="#row-{anchors[id(score)]}">{_esc(score.series.name)}</a>',
                f'<span class="{score.verdict.value}">{_esc(tables.verdict_text(score))}</span>',
                *(_esc(c) for c in tables.score_cells(score)),
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append(
            f'<table id="failing"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)


def _run_targets(targets: RunTargets) -> str:
    state = "passed" if targets.passed else "did not pass"
    when = f" at {targets.commit[:8]}" if targets.commit else ""
    rows = []
    for check in targets.checks:
        value = "no result" if check.value is None else f"{check.value:.4g}"
        verdict = "pass" if check.passed else "FAIL"
        css = "" if check.passed else ' class="REGRESSION"'
        rows.append(
            f"<tr><td>{_esc(check.workload)}</td><td>{_esc(check.metric)}</td>"
            f'<td class="num">{_esc(value)}</td>'
            f'<td class="num">{_esc(check.op)} {check.target:.4g}</td><td{css}>{verdict}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="5">no target checks in the report</td></tr>'
    markdown = targets.path.with_name("report.md")
    source = (
        '<a href="run/report.md">run/report.md</a>' if markdown.is_file() else "run/report.json"
    )
    return (
        f'<section id="run-targets"><h2>Run report{_esc(when)}: targets ({state})</h2>'
        f'<p class="note">from {source} ({_esc(targets.created)})</p>'
        "<table><thead><tr><th>workload</th><th>metric</th><th>value</th><th>target</th>"
        f"<th>check</th></tr></thead><tbody>{body}</tbody></table></section>"
    )


def _change_cell(score: SeriesScore) -> str:
    if score.gate is None:
        return "first result" if len(score.series.commits) <= 1 else "no reference yet"
    return tables.effect_text(score)


def _member_cells(member: Member, facts: PageFacts, inline: bool) -> list[str]:
    score = member.score
    latest = tables.value_text(float(score.series.centres[-1]), score.series.unit)
    confidence = tables.confidence_text(score.gate.confidence) if score.gate else "—"
    expanded = "true" if inline else "false"
    return [
        f'<td class="num latest">{_esc(latest)}</td>',
        f'<td class="num change">{_esc(_change_cell(score))}</td>',
        f'<td class="num">{_esc(confidence)}</td>',
        f'<td class="verdict {score.verdict.value}">{_esc(tables.verdict_text(score))}</td>',
        f'<td class="history">{sparkline(score)}</td>',
        f'<td><button class="plot" data-slug="{member.slug}" aria-expanded="{expanded}">'
        "plot</button></td>",
    ]


def _detail_row(member: Member, inline: bool) -> str:
    hidden = "" if inline else " hidden"
    content = detail_plot(member.score) if inline else ""
    loaded = ' data-loaded="1"' if inline else ""
    return (
        f'<tr class="detail" id="detail-{member.slug}"{hidden}><td colspan="{len(_ROW_COLUMNS)}">'
        f'<div class="plot-box" id="plot-{member.slug}"{loaded}>{content}</div></td></tr>'
    )


def _benchmark_rows(row: BenchmarkRow, facts: PageFacts, inline: set[str]) -> str:
    link = ""
    if facts.asv_page:
        href = asv_link(facts.asv_page, row.benchmark, facts.machine)
        link = f'<a class="asv" href="{_esc(href)}" title="asv graph">asv ↗</a>'
    worst = row.worst.score
    css = " failing" if worst.failing else ""
    parts = [f'<tbody class="bench" data-benchmark="{_esc(row.benchmark)}">']
    single = len(row.members) == 1 and not row.members[0].label
    if single:
        name = f"{_esc(row.function)}{link}"
        parts.append(_member_rows(row.members[0], f"head{css}", name, facts, inline))
    else:
        parts.append(
            f'<tr class="head{css}"><td class="name">{_esc(row.function)}{link} '
            f'<span class="note">({len(row.members)})</span></td>'
            f'<td colspan="3"></td><td class="verdict {worst.verdict.value}">'
            f"{_esc(tables.verdict_text(worst))}</td><td></td><td></td></tr>"
        )
        for member in row.members:
            failing = " failing" if member.score.failing else ""
            name = _esc(member.label)
            parts.append(_member_rows(member, f"member{failing}", name, facts, inline))
    parts.append("</tbody>")
    return "".join(parts)


def _member_rows(
    member: Member, css: str, name_html: str, facts: PageFacts, inline: set[str]
) -> str:
    """One series' row (name, cells) and its plot row below it."""
    shown = member.slug in inline
    return (
        f'<tr class="{css}" id="row-{member.slug}"><td class="name">{name_html}</td>'
        + "".join(_member_cells(member, facts, shown))
        + "</tr>"
        + _detail_row(member, shown)
    )


def render_page(scores: Sequence[SeriesScore], out_dir: Path, facts: PageFacts) -> Path:
    """Write ``index.html`` and ``series/<name>.js`` (the plots loaded on demand) into
    ``out_dir``; return the page. ``scores`` come worst first."""
    suites = group_scores(scores)
    members = [m for suite in suites for g in suite.classes for r in g.rows for m in r.members]
    anchors = {id(m.score): m.slug for m in members}
    flagged = sorted((m for m in members if is_flagged(m.score)), key=lambda m: m.rank)
    inline = {m.slug for m in flagged[:MAX_INLINE_PLOTS]}
    series_dir = out_dir / SERIES_DIR
    series_dir.mkdir(parents=True, exist_ok=True)
    for member in members:
        if member.slug not in inline:
            svg = json.dumps(detail_plot(member.score))
            write_text_atomically(
                series_dir / f"{member.slug}.js",
                f"window.loadkitPlot({json.dumps(member.slug)}, {svg});\n",
            )
    commits = history_length(scores)
    header = "".join(f"<th>{_esc(c)}</th>" for c in _ROW_COLUMNS)
    body = []
    for suite in suites:
        body.append(f'<section class="suite" id="suite-{_esc(suite.name)}">')
        body.append(f"<h2>{_esc(suite.name)}</h2>")
        for group in suite.classes:
            if group.name:
                body.append(f"<h3>{_esc(group.name)}</h3>")
            rows = "".join(_benchmark_rows(r, facts, inline) for r in group.rows)
            body.append(f'<table class="rows"><thead><tr>{header}</tr></thead>{rows}</table>')
        body.append("</section>")
    meta = (
        f"machine <b>{_esc(facts.machine)}</b> · newest commit <b>{_esc(facts.commit[:8])}</b>"
        f" · {len(scores)} series · {commits} commit{'s' if commits != 1 else ''} of history"
    )
    if facts.asv_page:
        meta += f' · <a href="{_esc(facts.asv_page)}">asv site</a>'
    offline = ""
    if facts.asv_needs_internet:
        offline = (
            '<p class="note" id="asv-offline">The asv site loads jQuery and flot from the '
            "internet (asv's own page does): without a connection it renders blank. "
            "<code>loadkit report --asv-offline</code> fetches them once with npm and copies "
            "them beside it. This page needs nothing from outside its folder.</p>"
        )
    targets = _run_targets(facts.run_targets) if facts.run_targets else ""
    notes = list(facts.notes)
    notes_html = ""
    if notes:
        items = "".join(f"<li>{_esc(n)}</li>" for n in notes)
        notes_html = (
            f'<details id="notes"><summary>notes ({len(notes)})</summary><ul>{items}</ul></details>'
        )
    first_run = commits <= 1
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(facts.title)}</title><style>{_STYLE}</style></head>"
        f"<body data-commits='{commits}'><h1>{_esc(facts.title)}</h1>"
        f'<p class="meta">{meta}</p>'
        + _summary(scores, facts, commits, anchors)
        + (targets if first_run else "")
        + offline
        + notes_html
        + "".join(body)
        + ("" if first_run else targets)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
    path = out_dir / PAGE_NAME
    write_text_atomically(path, page)
    return path


def relative_link(target: Path, page_dir: Path) -> str:
    """A link from the page's folder to ``target`` that works from disk and over HTTP."""
    return Path(os.path.relpath(target, page_dir)).as_posix()
