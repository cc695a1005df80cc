"""``loadkit bench``: the main job - asv on this commit, the asv site, the run report
and the history page (:mod:`loadkit.asvsuite.bench`)."""

from __future__ import annotations

import argparse

from loadkit.common.argtypes import aa_runs
from loadkit.runs import workload


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="asv run on this commit, asv publish, run report")
    bench.add_argument("--bench", metavar="REGEX", help="only benchmarks matching (asv -b)")
    bench.add_argument("--scale", choices=workload.SCALES, default="quick")
    bench.add_argument("--skip-report", action="store_true", help="only asv run + publish")
    bench.add_argument(
        "--aa",
        type=aa_runs,
        metavar="N",
        help="A/A study: run the suite N times (2-50) on this commit and print each "
        "figure's spread and the effect 1 and 5 runs detect (no publish, no report)",
    )
    bench.add_argument("--json", metavar="PATH", help="with --aa: write the study's table here")
    bench.add_argument(
        "--machine",
        help="asv machine name to file the results under (default: this host's); CI "
        "runners share one so their results form one history",
    )
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: asv and the history scoring are heavy.
    from loadkit.asvsuite.bench import BenchOptions, run_bench

    options = BenchOptions(
        bench=args.bench,
        scale=args.scale,
        skip_report=args.skip_report,
        aa=args.aa,
        json=args.json,
        machine=args.machine,
    )
    return run_bench(options)
