"""``loadkit run``: run workloads, each in its own child process, and write the run
report (:mod:`loadkit.supervise.orchestrator`, :mod:`loadkit.runs.run_report`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from loadkit.common.argtypes import positive_float
from loadkit.common.errors import UsageError
from loadkit.common.path_checks import check_input_file, check_output_dir, check_output_file
from loadkit.common.site_paths import page_link
from loadkit.redis_io.server import redis_url
from loadkit.redis_io.urls import ENV_URL
from loadkit.runs import workload
from loadkit.runtime import lifetime
from loadkit.supervise import guard


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run workloads and write the report")
    parser.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help=f"workloads to run (default: all of {', '.join(workload.WORKLOADS)})",
    )
    parser.add_argument("--scale", choices=workload.SCALES, default="quick")
    parser.add_argument("--json", metavar="PATH", help="write the JSON report")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown report")
    parser.add_argument(
        "--redis-url", help=f"use this Redis instead of an embedded one (${ENV_URL})"
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="per-workload timeout in seconds (default 120)",
    )
    parser.add_argument("--baseline", metavar="PATH", help="previous JSON report to compare with")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: Redis, the orchestrator and the report are heavy.
    from loadkit.redis_io.keyspace import new_run_id
    from loadkit.runs.run_report import build_report, git_commit, load_report
    from loadkit.runs.run_report_output import print_summary, write_report
    from loadkit.supervise.orchestrator import run_workloads

    names = workload.resolve(args.workloads)
    plots = _check_run_paths(args)
    baseline = load_report(args.baseline) if args.baseline else None
    console = Console(stderr=True)
    run_id = new_run_id()  # prefixes every key of this run: clean_run(url, run_id) deletes them
    # A stop signal unwinds like an error: the worker is stopped, the run's keys deleted,
    # the embedded Redis stopped, the temp folders removed; a SIGKILL leaves it to the guard.
    with (
        lifetime.stop_on_signals(),
        guard.guarded() as watcher,
        redis_url(args.redis_url) as url,
    ):
        if args.redis_url or os.environ.get(ENV_URL):  # an embedded Redis just stops
            watcher.watch_run(url, run_id)
        entries, targets = run_workloads(
            names, args.scale, url, args.timeout, console, plots, run_id
        )
    links = {}
    if args.markdown:
        page = _history_page(Path(args.markdown))
        if page:
            links["history page"] = page
    report = build_report(
        entries, targets, scale=args.scale, baseline=baseline, commit=git_commit(), links=links
    )
    print_summary(report, Console())
    write_report(report, args.json, args.markdown)
    return 0 if report["passed"] else 1


def _check_run_paths(args: argparse.Namespace) -> Path | None:
    """Every path of ``run`` checked before Redis starts or a workload runs; returns the
    folder for plots (beside the report) or None when no report is written."""
    args.json = check_output_file(args.json, "--json")
    args.markdown = check_output_file(args.markdown, "--markdown")
    check_input_file(args.baseline, "--baseline")
    report_path = args.markdown or args.json
    if report_path is None:
        return None
    plots = report_path.parent / "plots"
    check_output_dir(plots, "plots folder")
    return plots


def _history_page(markdown: Path) -> str | None:
    """The history page for this repository's asv site (if ``loadkit report`` wrote it),
    as a link relative to the Markdown report."""
    # Imported when it is needed: reading asv.conf.json pulls in asv.
    from loadkit.history.sources.asv_config import load_config

    conf = Path("asv.conf.json")
    if not conf.is_file():
        return None
    try:
        html_dir = load_config(conf).html_dir
    except UsageError:
        return None
    page = page_link(html_dir)
    return os.path.relpath(page, markdown.resolve().parent) if page else None
