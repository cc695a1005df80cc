"""``loadkit bench``: the continuous-benchmarking job for the current commit.

1. the suite's ``track_`` declarations (metric, unit, direction) -> ``results/
   loadkit-suite.jsonl``, read by the history scoring;
2. ``asv machine --yes`` once, if asv does not know this machine (or ``--machine``) yet;
3. ``asv run --python=same`` on HEAD with samples recorded into ``results/``; every
   workload's scenario runs once, at ``--scale``, and the runs are counted;
4. ``asv publish`` into ``html/``;
5. the run report -> ``html-loadkit/run/report.json`` and ``report.md`` (+ ``plots/``),
   built from the values asv recorded in step 3 (:mod:`loadkit.asvsuite.recorded`), not from a
   second run of the workloads (``loadkit run`` is for runs without asv);
6. the history page (``loadkit report``) -> ``html-loadkit/index.html``, showing the
   run report's target checks beside asv's history.

loadkit's pages sit beside the asv site because ``asv publish`` deletes ``html/``.
Existing results are never deleted: asv adds this commit's file beside the others.
Exit codes are loadkit's own, not asv's (:func:`job_exit_code`): 0 when every benchmark
ran and every target is met; 1 when a benchmark failed or timed out (asv says 2, which
in loadkit means bad usage) or a target was missed; 2 for usage errors; a stop signal
128 + n.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from loadkit.asvsuite.machine import ensure_machine
from loadkit.asvsuite.runner import LOG_ENV, SCALE_ENV, count_runs
from loadkit.asvsuite.track import discover
from loadkit.common.errors import Failure, UsageError
from loadkit.common.path_checks import check_html_dir, check_output_dir, check_output_file
from loadkit.common.site_paths import page_dir
from loadkit.history.options import PageOptions
from loadkit.history.sources.asv_config import load_config
from loadkit.runs import workload
from loadkit.runs.declarations import Tracked, write_sidecar
from loadkit.runs.run_report_output import print_summary, write_report
from loadkit.runtime import lifetime


def _repo_root() -> Path:
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "asv.conf.json").is_file():
            return folder
    raise UsageError("no asv.conf.json here or above: run `loadkit bench` inside the repository")


def _head(root: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise UsageError(f"{root} is not a git repository with a commit: {out.stderr.strip()}")
    return out.stdout.strip()


def _asv(root: Path, *args: str, env: Mapping[str, str] | None = None) -> int:
    """Run asv in a process group of its own that dies with this process, so that a
    stop signal here stops asv with everything it started (its forkserver, a benchmark
    mid-run) before this process exits 128 + n."""
    command = [sys.executable, "-m", "asv", *args]
    proc = subprocess.Popen(
        command, cwd=root, env=env, preexec_fn=lifetime.die_with_parent_preexec(new_group=True)
    )
    try:
        with lifetime.stop_on_signals():
            return proc.wait()
    except BaseException:
        # asv's forkserver runs each benchmark in a session of its own: stop those too.
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            descendants = psutil.Process(proc.pid).children(recursive=True)
        lifetime.stop_group(proc.pid)
        for child in descendants:
            lifetime.stop_process(child)
        raise


def asv_exit_code(status: int) -> int:
    """``asv run``'s exit status in loadkit's terms: 0 passed; ended by signal n
    (``subprocess`` reports -n; a shell 128 + n) is that signal's 128 + n; anything else
    is a benchmark that failed or timed out (asv exits 2 for those), which is 1."""
    if status == 0:
        return 0
    if status < 0:
        return lifetime.exit_code(-status)
    if status in (lifetime.exit_code(s) for s in lifetime.STOP_SIGNALS):
        return status
    return 1


def job_exit_code(asv_status: int, run_code: int | None) -> int:
    """The job's exit code from ``asv run``'s status and the run report's code (1 when
    a target was missed; None when skipped): an interruption wins, then bad usage (2),
    then any failure (1)."""
    codes = [asv_exit_code(asv_status), run_code or 0]
    interrupted = [c for c in codes if c > 2]
    if interrupted:
        return interrupted[0]
    return max(codes)


def _check_paths(results: Path, html: Path) -> Path:
    """Where asv and loadkit will write, checked before asv runs a single benchmark;
    the run report's folder."""
    check_output_dir(results, "results_dir of asv.conf.json")
    check_output_dir(html, "html_dir of asv.conf.json")
    check_html_dir(html, "html_dir of asv.conf.json")
    run_dir = page_dir(html) / "run"
    check_output_file(run_dir / "report.json", "run report")
    check_output_file(run_dir / "report.md", "run report")
    check_output_dir(run_dir / "plots", "plots folder")
    return run_dir


def _declarations(suite_dir: Path) -> list[Tracked]:
    if not suite_dir.is_dir():
        raise UsageError(f"benchmark_dir {suite_dir} of asv.conf.json is not a folder")
    try:
        return discover(suite_dir)
    except Exception as exc:  # the suite's own error: asv would fail on it too
        raise Failure(
            f"the benchmark suite in {suite_dir} does not import: {type(exc).__name__}: {exc}"
        ) from None


@dataclass(frozen=True)
class BenchOptions:
    """What ``loadkit bench`` was asked for: which benchmarks (asv's ``--bench``
    regex), at which scale, and whether to stop after asv publish."""

    bench: str | None = None
    scale: str = "quick"
    skip_report: bool = False
    aa: int | None = None  # an A/A study of this many runs instead (loadkit.asvsuite.aa)
    json: str | None = None  # where the study's table goes
    # asv's machine name; CI runners share one so their results form one history.
    machine: str | None = None

    def __post_init__(self) -> None:
        if self.json is not None and self.aa is None:
            raise UsageError("--json is the A/A study's table: use it with --aa N")


def asv_run(root: Path, commit: str, options: BenchOptions, console: Console) -> int:
    """``asv run`` on ``commit`` at the scale, samples recorded; its exit status. The
    scenario runs are counted and printed."""
    console.rule(f"asv run on {commit[:8]}, scale {options.scale}")
    run_args = ["run", "--python=same", "--set-commit-hash", commit, "--record-samples"]
    if options.machine:
        run_args += ["--machine", options.machine]
    if options.bench:
        run_args += ["--bench", options.bench]
    with tempfile.TemporaryDirectory(prefix="loadkit-bench-") as tmp:
        log = Path(tmp) / "scenarios.jsonl"
        # asv's own temp files (its forkserver's socket folder) go in here too, so they
        # are removed however the run ends.
        env = {**os.environ, SCALE_ENV: options.scale, LOG_ENV: str(log), "TMPDIR": tmp}
        status = _asv(root, *run_args, env=env)
        runs = count_runs(log)
    shown = ", ".join(f"{name} {runs[name]}" for name in workload.WORKLOADS if name in runs)
    console.print(f"scenario runs in this asv run: {shown or 'none'}")
    return status


def run_bench(options: BenchOptions) -> int:
    root = _repo_root()
    conf = load_config(root / "asv.conf.json")
    results, html = conf.results_dir, conf.html_dir
    run_dir = _check_paths(results, html)
    commit = _head(root)
    console = Console(stderr=True)
    tracked = _declarations(conf.benchmark_dir)
    write_sidecar(results, tracked)
    ensure_machine(options.machine, lambda *a: _asv(root, *a))
    if options.aa is not None:
        from loadkit.asvsuite.aa import run_aa
        from loadkit.asvsuite.known_noise import study_path

        def run_once() -> int:
            return asv_exit_code(asv_run(root, commit, options, console))

        return run_aa(
            options.aa,
            run_once,
            results,
            commit,
            tracked,
            console,
            options.json,
            options.scale,
            study_path(root, options.scale) if options.bench is None else None,
        )
    status = asv_run(root, commit, options, console)
    if asv_exit_code(status) > 2:  # stopped by a signal: nothing more to do
        console.print(f"[red]asv run was stopped (exit {status})[/]")
        return asv_exit_code(status)
    if status != 0:
        console.print(
            f"[red]asv run exited {status}: a benchmark failed or timed out "
            "(see above); publishing what was recorded[/]"
        )
    console.rule("asv publish")
    if _asv(root, "publish") != 0:
        raise Failure("asv publish failed (see its output above)")
    if options.skip_report:
        return job_exit_code(status, None)
    # The run report first: the history page shows its target checks on a first run.
    console.rule("run report (from asv's recorded values)")
    page = page_dir(html) / "index.html"
    report = _run_report(results, commit, tracked, options.scale, run_dir, html, page)
    print_summary(report, Console(), title="loadkit bench")
    write_report(report, run_dir / "report.json", run_dir / "report.md")
    console.rule("history page")
    try:
        # Imported here, after asv ran: the scoring pulls in scipy, which would slow
        # every check of bad input before it.
        from loadkit.history.actions import write_page

        write_page(PageOptions(results=results, html=html).checked())
    except UsageError as exc:  # e.g. a history that cannot be ordered: the report stands
        console.print(f"[yellow]history page not written: {exc}[/]")
    console.print(f"asv site: {html / 'index.html'}  (`loadkit serve` shows both sites)")
    console.print(f"history:  {page}")
    console.print(f"report:   {run_dir / 'report.md'}")
    return job_exit_code(status, 0 if report["passed"] else 1)


def _run_report(
    results: Path,
    commit: str,
    tracked: list[Tracked],
    scale: str,
    run_dir: Path,
    html: Path,
    page: Path,
) -> dict[str, Any]:
    """The run report of this commit from asv's recorded values, with the plots that
    can be drawn from them."""
    # Imported once asv has run: reading its results and drawing take seconds to load,
    # which every check of bad input before the run would pay.
    from loadkit.asvsuite.recorded import entries, read_commit, workload_metrics
    from loadkit.runs.run_report import build_report

    recorded = workload_metrics(read_commit(results, commit), tracked, scale)
    blocks, targets = entries(recorded, scale)
    for name, block in blocks.items():
        block["artifacts"] = _plots(name, block["metrics"], run_dir / "plots")
    links = {
        "asv site": os.path.relpath(html / "index.html", run_dir),
        "history page": os.path.relpath(page, run_dir),
    }
    return build_report(blocks, targets, scale=scale, commit=commit, links=links)


def _plots(name: str, metrics: Mapping[str, float | None], folder: Path) -> dict[str, str]:
    """Plots drawn from recorded metrics alone (the others need a run's raw samples)."""
    if name != "wasm":
        return {}
    # Imported only when a plot is drawn: matplotlib.
    from loadkit.workloads.wasm.plots import plot_speedup, points_from_metrics

    measured = {k: v for k, v in metrics.items() if v is not None}
    if not points_from_metrics(measured):
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    path = plot_speedup(measured, folder / "wasm-speedup.png")
    return {"WASM speedup by document size": f"{folder.name}/{path.name}"}
