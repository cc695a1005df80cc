"""The calibration study as a whole: every cell a job of its own, on every core.

Cells are independent and each is seeded from the study's seed and its own place, so
running them in parallel, in any order, gives the same tables as running them one by
one. Three studies make it up: single series with known truth beside asv's
``step_detect`` (:mod:`loadkit.history.calibration.simulation`), the gate as ``check``
uses it, and machines shaped like real asv result sets
(:mod:`loadkit.history.calibration.machine_simulation`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadkit.common.parallel import map_in_processes
from loadkit.history.calibration import machine_simulation as machines
from loadkit.history.calibration import simulation


@dataclass(frozen=True)
class CalibrationReport:
    """Every table of the study."""

    cells: list[simulation.Cell]
    gate_cells: list[simulation.GateCell]
    machine_cells: list[machines.MachineCell]
    calibration: list[machines.CalibrationRow]
    suite: machines.SuiteCell

    @property
    def met(self) -> bool:
        rows: list[Any] = [*self.cells, *self.gate_cells, *self.machine_cells, *self.calibration]
        return all(row.met for row in rows) and self.suite.met

    def as_dict(self) -> dict[str, object]:
        return {
            "cells": [cell.as_dict() for cell in self.cells],
            "gate_cells": [cell.as_dict() for cell in self.gate_cells],
            "machine_cells": [cell.as_dict() for cell in self.machine_cells],
            "calibration": [row.as_dict() for row in self.calibration],
            "suite": self.suite.as_dict(),
        }


@dataclass(frozen=True)
class Job:
    """One cell: what to call, with what, and where its result goes."""

    name: str
    table: str
    function: Callable[..., Any]
    arguments: tuple[Any, ...]


def _single(index: int, series: int, seed: int) -> simulation.Cell:
    return simulation.run_cell(simulation.SCENARIOS[index], series, seed)


def _gate(index: int, series: int, seed: int) -> simulation.GateCell:
    return simulation.run_gate_cell(simulation.GATE_SCENARIOS[index], series, seed)


def _machine(index: int, series: int, seed: int) -> machines.MachineCell:
    return machines.run_machine_cell(machines.MACHINE_SCENARIOS[index], series, seed)


def jobs(series: int, seed: int) -> list[Job]:
    """The study's cells, in table order (scenarios by index: their level paths are
    closures, which do not cross to another process)."""
    listed = [
        Job(s.name, "cells", _single, (i, series, seed)) for i, s in enumerate(simulation.SCENARIOS)
    ]
    listed += [
        Job(s.name, "gate_cells", _gate, (i, series, seed))
        for i, s in enumerate(simulation.GATE_SCENARIOS)
    ]
    listed += [
        Job(s.name, "machine_cells", _machine, (i, series, seed))
        for i, s in enumerate(machines.MACHINE_SCENARIOS)
    ]
    listed.append(Job("calibration", "calibration", machines.run_calibration, (4 * series, seed)))
    listed.append(Job("suite", "suite", machines.run_suite, (max(10, series // 5), seed)))
    return listed


def _run_job(job: Job) -> Any:
    return job.function(*job.arguments)


def run_study(
    series: int,
    seed: int,
    on_job: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> CalibrationReport:
    """Run every cell (in ``workers`` processes; one runs them in this process)."""
    listed = jobs(series, seed)
    done = None if on_job is None else (lambda index: on_job(listed[index].name))
    outcomes = map_in_processes(_run_job, listed, workers or os.cpu_count() or 1, done)
    results = dict(enumerate(outcomes))
    tables: dict[str, list[Any]] = {}
    for index, job in enumerate(listed):
        tables.setdefault(job.table, []).append(results[index])
    return CalibrationReport(
        cells=tables["cells"],
        gate_cells=tables["gate_cells"],
        machine_cells=tables["machine_cells"],
        calibration=tables["calibration"][0],
        suite=tables["suite"][0],
    )
