"""The ``track_`` methods of the asv suite, and finding them the way asv does.

:func:`track` makes a ``track_`` benchmark that reads one workload metric from its
class's shared run and declares its unit and direction
(:class:`loadkit.runs.declarations.Tracked`); :func:`discover` lists the declarations
of a suite, so ``loadkit bench`` can write them beside asv's results.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadkit.runs.declarations import DIRECTIONS, UNITS, Metrics, Tracked


def track(metric: str, unit: str, direction: str) -> Callable[..., float]:
    """A ``track_`` method returning one metric of the class's shared run.

    asv passes the ``setup_cache`` result (the workload's flat metrics) and the class's
    parameters; the method only reads. An unknown unit or direction is a mistake in the
    suite, raised when the module is imported so ``asv check`` sees it."""
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} of {metric} is not one of {' '.join(UNITS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} of {metric} is not one of {DIRECTIONS}")

    def read(self: Any, metrics: Metrics, *params: Any) -> float:
        names = getattr(self, "param_names", [])
        return float(metrics[metric.format(**dict(zip(names, map(str, params), strict=False)))])

    read.unit = unit  # type: ignore[attr-defined]
    read.direction = direction  # type: ignore[attr-defined]
    read.metric = metric  # type: ignore[attr-defined]
    # asv's version of a benchmark is a hash of its source, the same for every reader;
    # a series is the declaration, so a changed metric, unit or direction starts anew.
    read.version = f"{metric} {unit} {direction}"  # type: ignore[attr-defined]
    return read


def _declared(benchmark: Any) -> Tracked | None:
    """The declaration behind one discovered asv benchmark, if it has one."""
    func = benchmark.func
    metric, direction = getattr(func, "metric", None), getattr(func, "direction", None)
    owner = getattr(func, "__self__", None)
    workload = getattr(owner, "workload", None)
    if not (isinstance(metric, str) and isinstance(direction, str) and isinstance(workload, str)):
        return None
    return Tracked(
        benchmark=benchmark.name,
        workload=workload,
        metric=metric,
        unit=str(getattr(func, "unit", "")),
        direction=direction,
        param_names=tuple(str(n) for n in benchmark.param_names),
        setup_cache_key=benchmark.setup_cache_key,
    )


def discover(benchmark_dir: Path) -> list[Tracked]:
    """The declared ``track_`` benchmarks of a suite, found the way asv finds them.

    Imports the suite in this process (as ``asv run`` does in its own): a suite that
    does not import raises here, before asv runs anything."""
    # Imported when a suite is discovered: asv's runner takes most of a second to load,
    # which loading the suite's track_ methods (and bench's checks of bad input) need not pay.
    from asv_runner.discovery import disc_benchmarks

    root = str(benchmark_dir.resolve())
    parent = os.path.dirname(root)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)
    try:
        return [d for b in disc_benchmarks(root) if (d := _declared(b)) is not None]
    finally:
        if added:
            sys.path.remove(parent)
