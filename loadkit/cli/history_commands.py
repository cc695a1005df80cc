"""The ``check``, ``calibrate`` and ``report`` commands: options in, exit code out.

Only wiring lives here: parse and validate options (bad ones raise ``UsageError``, which
the main CLI prints as one line with exit code 2), read the history, call the pure
scoring, and hand the result to the table, JSON or page writers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from loadkit.common.argtypes import confidence_level, fraction, positive_int
from loadkit.common.path_checks import (
    check_html_dir,
    check_input_dir,
    check_input_file,
    check_output_file,
)
from loadkit.common.site_paths import PAGE_NAME, report_dir

DEFAULT_SERIES = 500
DEFAULT_SEED = 2026


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """The command body lives in :mod:`loadkit.history.actions`, imported only when the
    command runs: scipy costs a second, which every other loadkit command
    would otherwise pay just to build the parser."""

    def run(args: argparse.Namespace) -> int:
        check_paths(args)  # a path that cannot work costs one line, not a read of results
        from loadkit.history import actions

        return int(getattr(actions, name)(args))

    run.__name__ = name
    return run


def check_paths(args: argparse.Namespace) -> None:
    """The paths of ``check``, ``calibrate`` and ``report``, checked before any work."""
    if getattr(args, "results", None) is not None:
        check_input_dir(args.results, "--results")
    check_input_file(getattr(args, "config", None), "--config")
    if hasattr(args, "json"):  # kept as typed until here: "out/" names a folder
        args.json = check_output_file(args.json, "--json")
    if getattr(args, "html", None) is not None:
        check_html_dir(args.html, "--html")


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--machine",
        help="machine folder in the results (default: the only one, else this host's, as asv)",
    )
    parser.add_argument("--commit", help="judge the history as of this commit (hash or prefix)")
    parser.add_argument(
        "--confidence", type=confidence_level, default=0.95, help="verdict confidence (0.95)"
    )
    parser.add_argument(
        "--min-effect",
        type=fraction,
        default=0.05,
        help="smallest relative worsening that fails the check (0.05 = 5%%)",
    )
    parser.add_argument(
        "--fdr",
        type=fraction,
        default=0.01,
        help="false-discovery rate across series (Benjamini–Hochberg): with no real change "
        "anywhere, the whole check fails at most this often (0.01)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="asv.conf.json giving the repository and branch "
        "(default: the one next to the results directory)",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        help="local clone of the benchmarked project: commits in the first-parent order "
        "of the configured branch (default: the config's repo when it is a local clone)",
    )
    parser.add_argument(
        "--asv-index",
        type=Path,
        metavar="PATH",
        help="asv's published index.json (or the html dir holding it): commits in asv's "
        "graph order (default: the one in the config's html_dir)",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``check``, ``calibrate`` and ``report`` on the main CLI's subparsers."""
    check = subparsers.add_parser(
        "check",
        help="score every asv series and gate the newest commit",
        description="Exit 1 if any benchmark regressed with the required confidence and "
        "effect size, 0 otherwise, 2 on usage errors.",
    )
    check.add_argument("--results", type=Path, default=Path("results"), help="asv results dir")
    _add_history_options(check)
    check.add_argument("--json", help="also write the scores as JSON here")
    check.set_defaults(func=_lazy("run_check"))

    calibration = subparsers.add_parser(
        "calibrate",
        help="simulation study: loadkit vs asv step_detect on series with known truth",
        description="Exit 0 when every cell meets its requirement, 1 otherwise.",
    )
    calibration.add_argument(
        "--series", type=positive_int, default=DEFAULT_SERIES, help="series per scenario"
    )
    calibration.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    calibration.add_argument("--json", help="also write the table as JSON here")
    calibration.set_defaults(func=_lazy("run_calibrate"))

    report = subparsers.add_parser(
        "report",
        help="write the history page (verdicts, trends, plots) next to the asv site",
    )
    report.add_argument("--results", type=Path, required=True, help="asv results dir")
    report.add_argument(
        "--html", type=Path, required=True, help="asv html dir (the page goes beside it)"
    )
    _add_history_options(report)
    report.add_argument(
        "--asv-offline",
        action="store_true",
        help="fetch the asv site's scripts once with npm (they come from CDNs) so it "
        "renders without internet; once cached, every report copies them in",
    )
    report.set_defaults(func=_lazy("run_history_page"))


def write_history_page(
    results: str | os.PathLike[str],
    html: str | os.PathLike[str],
    *,
    machine: str | None = None,
    commit: str | None = None,
    config: str | os.PathLike[str] | None = None,
    confidence: float = 0.95,
    min_effect: float = 0.05,
    fdr: float = 0.01,
    asv_offline: bool = False,
) -> Path:
    """The history page for asv results, as ``loadkit report`` writes it: for callers
    such as ``loadkit bench`` that have the paths in hand. Returns the page's path;
    a path or option that cannot work raises ``UsageError``."""
    args = argparse.Namespace(
        results=Path(results),
        html=Path(html),
        machine=machine,
        commit=commit,
        config=None if config is None else Path(config),
        repo=None,
        asv_index=None,
        confidence=confidence,
        min_effect=min_effect,
        fdr=fdr,
        asv_offline=asv_offline,
    )
    check_paths(args)
    from loadkit.history import actions

    return Path(actions.write_page(args))


def history_page_link(html_dir: str | os.PathLike[str]) -> str | None:
    """Path of the report page for an asv html dir, or None if it was never written."""
    page = report_dir(Path(html_dir)) / PAGE_NAME
    return str(page) if page.is_file() else None
