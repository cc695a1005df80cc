"""Bodies of the ``check``, ``calibrate`` and ``report`` commands: read the history, call
the pure scoring, hand results to the table, JSON and page writers. They take typed
options (:mod:`loadkit.history.options`); the command line imports this module only
when one of those commands runs (it pulls in scipy)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from asv.machine import Machine
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from loadkit.common.atomic_file import write_text_atomically
from loadkit.common.errors import UsageError
from loadkit.common.parallel import process_mapper
from loadkit.common.site_paths import page_dir
from loadkit.history.calibration import tables as calibration_tables
from loadkit.history.calibration.machine_simulation import SIBLING_COMMITS, SIBLINGS
from loadkit.history.calibration.simulation import (
    GATE_BETWEEN_SD,
    GATE_SAMPLES,
    GATE_WITHIN_SD,
    SCENARIOS,
)
from loadkit.history.calibration.study import jobs, run_study
from loadkit.history.options import CalibrateOptions, CheckOptions, HistoryOptions, PageOptions
from loadkit.history.present import check_table as tables
from loadkit.history.present.asv_offline import assets_cache, cached, fetch_assets, vendor_asv_site
from loadkit.history.present.page import (
    PageFacts,
    asv_site_needs_internet,
    relative_link,
    render_page,
)
from loadkit.history.sources.asv_config import load_config
from loadkit.history.sources.asv_reader import (
    MachineHistory,
    MachineResults,
    list_machines,
    read_results,
)
from loadkit.history.sources.commit_order import (
    CommitOrder,
    OrderSources,
    order_sources,
    resolve_commit_order,
)
from loadkit.history.sources.run_targets import read_run_targets
from loadkit.history.stats.machine_level import is_machine
from loadkit.history.stats.scoring import (
    MAX_WORKERS,
    PARALLEL_FROM,
    ScoringOptions,
    SeriesScore,
    score_machine,
    worst_first,
)


def _stdout() -> Console:
    """Wide enough for the table when output goes to a file or a CI log."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _pick_machine(results: Path, machine: str | None) -> str:
    machines = list_machines(results)
    if machine is not None:
        return machine  # read_machine names the known ones if this is wrong
    if not machines:
        raise UsageError(f"no asv results in {results} (no machine folder with machine.json)")
    if len(machines) > 1:
        this_host = Machine.get_unique_machine_name()  # asv's default machine name
        if this_host in machines:
            return this_host
        raise UsageError(f"several machines in {results} ({', '.join(machines)}): pass --machine")
    return machines[0]


def _order_sources(options: HistoryOptions, results: Path) -> OrderSources:
    """The config and the named order sources, checked before any results are read."""
    config_path = options.config if options.config is not None else results.parent / "asv.conf.json"
    config = None
    no_config = None
    if config_path.is_file():
        config = load_config(config_path)
    elif options.config is not None:
        raise UsageError(f"asv config {options.config} does not exist")
    else:
        no_config = f"no asv.conf.json next to {results}"
    return order_sources(options.repo, options.asv_index, config, no_config)


def _resolve_commit(
    read: MachineResults, history: MachineHistory, order: CommitOrder, prefix: str
) -> str:
    prefix = prefix.lower()
    matches = [c for c in history.commits if c.startswith(prefix)]
    if not matches:
        if any(c.startswith(prefix) for c in read.commit_dates):
            raise UsageError(
                f"commit {prefix} has results on {history.machine} but is not on the "
                f"branch the commits are ordered by ({order.detail})"
            )
        raise UsageError(f"unknown commit {prefix}: no results for it on {history.machine}")
    if len(matches) > 1:
        raise UsageError(f"commit prefix {prefix} is ambiguous ({len(matches)} commits match)")
    return matches[0]


@dataclass(frozen=True)
class ScoredHistory:
    """One machine's history, its scores (worst first), the judged commit and the order."""

    history: MachineHistory
    scores: list[SeriesScore]
    newest: str
    order: CommitOrder
    notes: list[str]


def score_history(options: HistoryOptions) -> ScoredHistory:
    """Read and score the machine's history as the options ask."""
    console = _stderr()
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    results = Path(options.results)
    machine = _pick_machine(results, options.machine)
    sources = _order_sources(options, results)
    read = read_results(results, machine)
    for line in read.warnings():
        warn(line)
    if not len(read.table):
        raise UsageError(f"no readable benchmark results for machine {machine} in {results}")
    order = resolve_commit_order(read.commit_dates, sources, warn)
    history = read.history(order.commits)
    if not history.series:
        raise UsageError(f"no readable benchmark results for machine {machine} in {results}")
    newest = history.commits[-1]
    if options.commit:
        newest = _resolve_commit(read, history, order, options.commit)
    scoring = ScoringOptions(
        confidence=options.confidence, min_effect=options.min_effect, false_discovery=options.fdr
    )
    present = [series.up_to(newest) for series in history.series if newest in series.commits]
    missing = [series.name for series in history.series if newest not in series.commits]
    with Progress(
        TextColumn("reading histories"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("read", total=len(present))
        scores = score_machine(
            present,
            scoring,
            lambda: progress.advance(task),
            process_mapper(PARALLEL_FROM, MAX_WORKERS),
        )
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        warn(f"no result at {newest[:8]} (failed, skipped or not yet written) for {shown}")
    return ScoredHistory(history, worst_first(scores), newest, order, notes)


def run_check(options: CheckOptions) -> int:
    """``loadkit check``: print the table (and JSON); exit 1 on a confident regression."""
    scored = score_history(options)
    history, scores, newest = scored.history, scored.scores, scored.newest
    failing = [s for s in scores if s.failing]
    console = _stdout()
    console.print(escape(scored.order.line()), soft_wrap=True)
    title = f"loadkit check — {history.machine} @ {newest[:8]} ({len(scores)} series)"
    console.print(tables.check_table(scores, title))
    if any(is_machine(s.series) for s in scores):
        console.print(tables.MACHINE_NOTE, soft_wrap=True)
    outcome = escape(
        tables.outcome_text(
            [s.series.name for s in failing],
            newest,
            options.confidence,
            options.min_effect,
            options.fdr,
        )
    )
    if failing:
        outcome = outcome.replace("REGRESSION", "[bold red]REGRESSION[/]", 1)
    console.print(outcome)
    if options.json:
        write_text_atomically(
            options.json,
            json_document(
                {
                    "schema": tables.CHECK_SCHEMA,
                    "machine": history.machine,
                    "commit": newest,
                    "confidence": options.confidence,
                    "min_effect": options.min_effect,
                    "false_discovery": options.fdr,
                    "failing": [s.series.name for s in failing],
                    "commit_order": scored.order.as_dict(),
                    "skipped_files": history.skipped,
                    "series": [tables.score_to_dict(s) for s in scores],
                }
            ),
        )
    return 1 if failing else 0


def json_document(document: dict[str, object]) -> str:
    """A JSON document as written to disk: indented for people, ending in a newline."""
    return json.dumps(document, indent=2) + "\n"


def run_calibrate(options: CalibrateOptions) -> int:
    """``loadkit calibrate``: the simulation tables; exit 1 if a requirement is missed."""
    started = time.perf_counter()
    with Progress(
        TextColumn("calibrating {task.fields[cell]:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task(
            "calibrate", total=len(jobs(options.series, options.seed)), cell=""
        )

        def done(name: str) -> None:
            progress.update(task, advance=1, cell=name)

        report = run_study(options.series, options.seed, on_job=done)
    elapsed = time.perf_counter() - started
    console = _stdout()
    single = f"single series: {SCENARIOS[0].name} … n = 40 commits, 2% noise, seed {options.seed}"
    console.print(calibration_tables.calibration_table(report.cells, single))
    gate_title = (
        f"the gate as check uses it: {GATE_SAMPLES} samples/commit, "
        f"{GATE_WITHIN_SD:.0%} within, {GATE_BETWEEN_SD:.0%} between commits"
    )
    console.print(calibration_tables.gate_calibration_table(report.gate_cells, gate_title))
    machine_title = (
        f"machines like real asv result sets: each target beside {SIBLINGS} siblings "
        f"({SIBLING_COMMITS} commits), check as it runs (false discovery across them)"
    )
    console.print(calibration_tables.machine_calibration_table(report.machine_cells, machine_title))
    curve_title = (
        "calibration: verdicts from machines of every kind, of every length, "
        "right when they tell the truth about the newest commit"
    )
    console.print(calibration_tables.calibration_curve_table(report.calibration, curve_title))
    console.print(calibration_tables.suite_text(report.suite))
    console.print(f"{elapsed:.0f} s")
    if options.json:
        write_text_atomically(
            options.json,
            json_document({"seed": options.seed, "seconds": round(elapsed, 1), **report.as_dict()}),
        )
    return 0 if report.met else 1


def write_page(options: PageOptions) -> Path:
    """Score the history as ``check`` does and write the page beside the asv site."""
    scored = score_history(options)
    html_dir = Path(options.html)
    out_dir = page_dir(html_dir)
    # The order line goes to stderr where people read it; the page repeats it in its notes.
    _stderr().print(escape(scored.order.line()))
    asv_index = html_dir / "index.html"
    targets, unreadable = read_run_targets(out_dir / "run" / "report.json")
    notes = [scored.order.line(), *scored.notes, *([unreadable] if unreadable else [])]
    offline_note = _asv_offline(html_dir, options.asv_offline)
    if offline_note:
        notes.append(offline_note)
        _stderr().print(f"[yellow]warning:[/] {escape(offline_note)}")
    facts = PageFacts(
        title=f"loadkit history — {scored.history.machine} @ {scored.newest[:8]}",
        machine=scored.history.machine,
        commit=scored.newest,
        confidence=options.confidence,
        min_effect=options.min_effect,
        false_discovery=options.fdr,
        notes=notes,
        asv_page=relative_link(asv_index, out_dir) if asv_index.is_file() else None,
        asv_needs_internet=asv_site_needs_internet(asv_index),
        run_targets=targets,
    )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return render_page(scored.scores, out_dir, facts)
    except OSError as exc:
        raise UsageError(f"cannot write the report into {out_dir}: {exc.strerror or exc}") from None


def _asv_offline(html_dir: Path, fetch: bool) -> str | None:
    """Point the asv site at local copies of its CDN scripts when they are cached (npm
    fetches them first when asked); a note when that did not work."""
    if not (html_dir / "index.html").is_file():
        return None
    cache = assets_cache()
    if fetch and not cached(cache):
        failure = fetch_assets(cache)
        if failure:
            return f"the asv site still needs internet: {failure}"
    try:
        vendor_asv_site(html_dir, cache)
    except OSError as exc:
        return f"the asv site still needs internet: cannot copy its scripts: {exc}"
    return None


def run_history_page(options: PageOptions) -> int:
    """``loadkit report``: the history page in ``<html>-loadkit/index.html``; prints its
    path (stdout holds nothing else)."""
    print(write_page(options), file=sys.stdout)
    return 0
