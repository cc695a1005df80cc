"""``loadkit calibrate``: the simulation study behind ``check``'s confidence."""

from __future__ import annotations

import argparse

from loadkit.common.argtypes import positive_int
from loadkit.history.options import DEFAULT_SEED, DEFAULT_SERIES, CalibrateOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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
    calibration.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = CalibrateOptions(series=args.series, seed=args.seed, json=args.json).checked()
    # Imported once the paths are checked: the simulations pull in scipy (about a second).
    from loadkit.history.actions import run_calibrate

    return run_calibrate(options)
