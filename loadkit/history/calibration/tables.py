"""The ``calibrate`` tables: each simulated cell's rates beside its requirement.

Apart from the check table (:mod:`loadkit.history.present.check_table`) so that what
renders the history page never imports the simulations.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from loadkit.history.calibration.machine_simulation import (
    CALIBRATION_SLACK,
    CalibrationRow,
    MachineCell,
    SuiteCell,
)
from loadkit.history.calibration.simulation import Cell, GateCell


def calibration_table(cells: Sequence[Cell], title: str) -> Table:
    """loadkit's flag rates beside asv's step_detect on the same simulated series."""
    table = Table(title=title)
    for column in ("scenario", "n", "noise", "series", "loadkit flags", "localized ±1"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    table.add_column("asv step_detect", justify="right")
    table.add_column("requirement")
    table.add_column("met")
    for cell in cells:
        localized = (
            "—" if cell.loadkit_localized_rate is None else f"{cell.loadkit_localized_rate:.1%}"
        )
        table.add_row(
            cell.scenario,
            str(cell.n),
            f"{cell.noise:.0%}",
            str(cell.series),
            f"{cell.loadkit_flag_rate:.1%}",
            localized,
            f"{cell.asv_flag_rate:.1%}",
            cell.requirement,
            _met(cell.met),
        )
    return table


def gate_calibration_table(cells: Sequence[GateCell], title: str) -> Table:
    """How often check fails simulated series, and the effect it can detect."""
    table = Table(title=title)
    table.add_column("scenario")
    for column in ("series", "check fails", "REGRESSION verdicts", "median detectable"):
        table.add_column(column, justify="right")
    table.add_column("target")
    table.add_column("met")
    for cell in cells:
        table.add_row(
            cell.scenario,
            str(cell.series),
            f"{cell.check_fail_rate:.1%}",
            f"{cell.regression_rate:.1%}",
            f"{cell.median_detectable_effect:.1%}",
            cell.requirement,
            _met(cell.met),
        )
    return table


def machine_calibration_table(cells: Sequence[MachineCell], title: str) -> Table:
    """How often check fails because of a target series beside fifty siblings."""
    table = Table(title=title)
    table.add_column("scenario")
    for column in ("commits", "samples", "series", "check fails", "REGRESSION", "NO_CHANGE"):
        table.add_column(column, justify="right")
    table.add_column("median detectable", justify="right")
    table.add_column("requirement")
    table.add_column("met")
    for cell in cells:
        table.add_row(
            cell.scenario,
            str(cell.commits),
            str(cell.samples),
            str(cell.series),
            f"{cell.check_fail_rate:.1%}",
            f"{cell.regression_rate:.1%}",
            f"{cell.no_change_rate:.1%}",
            f"{cell.median_detectable_effect:.1%}",
            cell.requirement,
            _met(cell.met),
        )
    return table


def calibration_curve_table(rows: Sequence[CalibrationRow], title: str) -> Table:
    """Of the verdicts given at confidence ≥ c, the share that is right, per kind."""
    table = Table(title=title)
    table.add_column("confidence ≥", justify="right")
    table.add_column("verdicts", justify="right")
    table.add_column("right", justify="right")
    for kind in ("REGRESSION", "IMPROVEMENT", "NO_CHANGE"):
        table.add_column(f"{kind} (n, right)", justify="right")
    table.add_column("requirement")
    table.add_column("met")
    for row in rows:
        kinds = [
            f"{count}, {right:.1%}" if count else "0"
            for count, right in (
                row.by_verdict[k] for k in ("REGRESSION", "IMPROVEMENT", "NO_CHANGE")
            )
        ]
        table.add_row(
            f"{row.level:.2f}",
            str(row.verdicts),
            f"{row.right:.1%}" if row.verdicts else "—",
            *kinds,
            f"right ≥ {row.level - CALIBRATION_SLACK:.0%}",
            _met(row.met),
        )
    return table


def suite_text(suite: SuiteCell) -> str:
    """One line: how often check fails a whole machine of unchanged series."""
    return (
        f"suite: check on {suite.suites} machines of {suite.series_per_suite} unchanged "
        f"{suite.commits}-commit series failed {suite.fail_rate:.1%} of the time "
        f"({suite.regression_verdicts_per_suite:.2f} REGRESSION verdicts per machine before "
        f"false-discovery control); requirement ≤ {suite.bound:.0%}: "
        + ("met" if suite.met else "NOT met")
    )


def _met(met: bool) -> str:
    return "[green]yes[/]" if met else "[bold red]NO[/]"
