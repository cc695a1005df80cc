"""``loadkit check``: score every asv series and gate the newest commit."""

from __future__ import annotations

import argparse
from pathlib import Path

from loadkit.cli.history_options import add_history_options, history_fields
from loadkit.history.options import CheckOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check",
        help="score every asv series and gate the newest commit",
        description="Exit 1 if any benchmark regressed with the required confidence and "
        "effect size, 0 otherwise, 2 on usage errors.",
    )
    check.add_argument("--results", type=Path, default=Path("results"), help="asv results dir")
    add_history_options(check)
    check.add_argument("--json", help="also write the scores as JSON here")
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    options = CheckOptions(**history_fields(args), json=args.json).checked()
    # Imported once the paths are checked: the scoring pulls in scipy (about a second).
    from loadkit.history.actions import run_check

    return run_check(options)
