"""``loadkit report``: write the history page beside the asv site.

The command keeps its name (``report``) for the scripts that call it; what it writes is
the history page, not the run report of ``loadkit run``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loadkit.cli.history_options import add_history_options, history_fields
from loadkit.history.options import PageOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="write the history page (verdicts, trends, plots) next to the asv site",
    )
    report.add_argument("--results", type=Path, required=True, help="asv results dir")
    report.add_argument(
        "--html", type=Path, required=True, help="asv html dir (the page goes beside it)"
    )
    add_history_options(report)
    report.add_argument(
        "--asv-offline",
        action="store_true",
        help="fetch the asv site's scripts once with npm (they come from CDNs) so it "
        "renders without internet; once cached, every report copies them in",
    )
    report.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    options = PageOptions(
        **history_fields(args), html=args.html, asv_offline=args.asv_offline
    ).checked()
    # Imported once the paths are checked: the scoring pulls in scipy (about a second).
    from loadkit.history.actions import run_history_page

    return run_history_page(options)
