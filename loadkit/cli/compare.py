"""``loadkit compare BASE [HEAD]``: the pull-request gate - BASE and HEAD run in turn
with asv, every benchmark judged (:mod:`loadkit.asvsuite.compare`)."""

from __future__ import annotations

import argparse

from loadkit.common.argtypes import confidence_level, fraction, positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser(
        "compare",
        help="the pull-request gate: run BASE and HEAD in turn, judge every benchmark",
        description="Run BASE and HEAD interleaved with asv on this machine and judge every "
        "benchmark. Exit 1 if one got confidently worse by at least --min-effect (or HEAD "
        "broke it), 0 otherwise, 2 on usage errors.",
    )
    compare.add_argument("base", metavar="BASE", help="the commit to compare against")
    compare.add_argument(
        "head", metavar="HEAD", nargs="?", default="HEAD", help="the commit judged (HEAD)"
    )
    how_long = compare.add_mutually_exclusive_group()
    how_long.add_argument(
        "--rounds", type=positive_int, help="rounds of each commit (at least 3; default 5)"
    )
    how_long.add_argument(
        "--budget",
        type=positive_float,
        metavar="MINUTES",
        help="as many rounds as fit in this many minutes, builds included (at least 3)",
    )
    compare.add_argument(
        "--scale", help="the suite's scale ($LOADKIT_BENCH_SCALE: smoke, quick, full)"
    )
    compare.add_argument("--config", help="asv.conf.json (default: here or above)")
    compare.add_argument(
        "--machine",
        default="compare",
        help="asv machine name the comparison's results are filed under (compare)",
    )
    compare.add_argument("--bench", metavar="REGEX", help="only benchmarks matching (asv -b)")
    compare.add_argument("--markdown", metavar="PATH", help="write the pull-request comment")
    compare.add_argument("--json", metavar="PATH", help="write every benchmark's verdict")
    compare.add_argument(
        "--confidence", type=confidence_level, default=0.95, help="interval confidence (0.95)"
    )
    compare.add_argument(
        "--min-effect",
        type=fraction,
        default=0.05,
        help="smallest relative worsening that fails the gate (0.05 = 5%%)",
    )
    compare.add_argument(
        "--fdr",
        type=fraction,
        default=0.01,
        help="false-discovery rate across benchmarks (Benjamini–Hochberg): comparing a "
        "commit with itself fails at most this often (0.01)",
    )
    compare.add_argument(
        "--noise",
        metavar="PATH",
        help="an A/A study (loadkit bench --aa) whose spreads are the benchmarks' known "
        "noise (default: .asv/aa/<scale>.json beside asv.conf.json, when there)",
    )
    compare.add_argument("--show-stderr", action="store_true", help="show benchmarks' stderr")
    compare.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: asv and the statistics are heavy.
    from loadkit.asvsuite.compare import CompareOptions, run_compare

    return run_compare(
        CompareOptions(
            base=args.base,
            head=args.head,
            rounds=args.rounds,
            budget_min=args.budget,
            scale=args.scale,
            config=args.config,
            machine=args.machine,
            bench=args.bench,
            markdown=args.markdown,
            json=args.json,
            confidence=args.confidence,
            min_effect=args.min_effect,
            false_discovery=args.fdr,
            show_stderr=args.show_stderr,
            noise=args.noise,
        )
    )
