"""Shared plumbing for the asv suite: each workload's scenario runs once per asv run.

A workload's load (thousands of agents, 100 swarms, 1000 sockets, megabytes parsed)
takes seconds to minutes; run in ``setup`` it would run again for every benchmark and
every repeat, and the figures of one class would come from different runs. So each
workload's base class (``FleetRun``, ``SwarmRun``, ...) defines one ``setup_cache`` that
runs the workload's own ``run(ctx)`` - the scenario ``loadkit run`` reports - and returns
its figures (:class:`loadkit.suite.Measured`: the metrics, and the trials' values of
figures measured in repeated trials); asv keys ``setup_cache`` by the file and line that
define it, so every class inheriting it shares that one run, and its ``track_`` methods
(made by :func:`loadkit.suite.track`) only read, handing asv the trials as samples.

The scale comes from ``$LOADKIT_BENCH_SCALE`` (``quick`` unless set; ``loadkit bench
--scale`` sets it) and is every class's single parameter, so figures of different scales
are different series, never one series that jumps. Every scenario run appends one JSON
line to ``$LOADKIT_BENCH_LOG`` when that names a file: how ``loadkit bench`` counts them
(:mod:`loadkit.asvsuite.runner`).
"""

from __future__ import annotations

from loadkit.asvsuite.runner import bench_scale, run_workload
from loadkit.runs.declarations import HIGHER, LOWER, track
from loadkit.runs.trials import Measured

__all__ = ["HIGHER", "LOWER", "Measured", "WorkloadRun", "bench_scale", "run_workload", "track"]


class WorkloadRun:
    """asv settings of a class whose figures come from its workload's one run.

    Subclasses set ``workload`` and define ``setup_cache`` returning
    ``run_workload(self.workload)`` (in their own file, so each workload has its own
    cache); the ``track_`` methods read it once each, in one process each."""

    workload: str = ""
    params = [[bench_scale()]]
    param_names = ["scale"]
    number = 1
    repeat = 1
    rounds = 1
    warmup_time = 0
    # The whole scenario runs under this limit (a busy 2-core machine takes up to 3x
    # its quiet time); a track_ reads a dict.
    timeout = 600
