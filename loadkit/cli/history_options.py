"""The options ``check`` and ``report`` share: which history, judged how.

Both read the same history the same way, so they take the same options and turn them
into the same typed value (:class:`loadkit.history.options.HistoryOptions`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loadkit.common.argtypes import confidence_level, fraction


def add_history_options(parser: argparse.ArgumentParser) -> None:
    """``--machine``, ``--commit``, the verdict's confidence, effect and false-discovery
    rate, and where the commit order comes from."""
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


def history_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The shared options as keyword arguments of the typed options."""
    return {
        "results": args.results,
        "machine": args.machine,
        "commit": args.commit,
        "confidence": args.confidence,
        "min_effect": args.min_effect,
        "fdr": args.fdr,
        "config": args.config,
        "repo": args.repo,
        "asv_index": args.asv_index,
    }
