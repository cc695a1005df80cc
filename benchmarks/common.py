"""Shared plumbing for the asv suite: each workload's scenario runs once per asv run.

A workload's load (thousands of agents, 100 swarms, 1000 sockets, megabytes parsed)
takes seconds to minutes; run in ``setup`` it would run again for every benchmark and
every repeat, and the figures of one class would come from different runs. So each
workload's base class (``FleetRun``, ``SwarmRun``, ...) defines one ``setup_cache`` that
runs the workload's own ``run(ctx)`` - the scenario ``loadkit run`` reports - and returns
its figures (``Measured``: the metrics, and the trials' values of figures measured in
repeated trials); asv keys ``setup_cache`` by the file and line that define it, so every
class inheriting it shares that one run, and its ``track_`` methods (made by ``track``)
only read, handing asv a figure's trials as its samples.

The scale comes from ``$LOADKIT_BENCH_SCALE`` (``quick`` unless set; ``loadkit bench
--scale`` sets it) and is every class's single parameter, so figures of different scales
are different series, never one series that jumps. Every scenario run appends one JSON
line to ``$LOADKIT_BENCH_LOG`` when that names a file: how ``loadkit bench`` counts them.

asv runs this suite against older commits' packages too, so it takes everything from
``loadkit.suite``, the one module that keeps its path and names; a package from before
that module held them has the same objects under their old paths, imported below.
"""

from __future__ import annotations

import inspect

try:
    from loadkit.suite import (
        HIGHER,
        LOWER,
        DashboardServer,
        Series,
        ServerConfig,
        SimulatedFleet,
        WasmParser,
        bench_scale,
        check_scores,
        dashboard_protocol,
        pyparser,
        run_workload,
        score_series,
        track,
        wasm_document,
        wasm_scenarios,
        wasm_sizes,
    )
except ImportError:  # a loadkit whose modules had not yet moved into layers
    from loadkit.dashboard import protocol as dashboard_protocol
    from loadkit.dashboard.server import DashboardServer, ServerConfig
    from loadkit.dashboard.sources import SimulatedFleet
    from loadkit.history.scoring import ScoringOptions, score_machine, score_series
    from loadkit.history.series import Series
    from loadkit.suite_run import bench_scale, run_workload
    from loadkit.wasm import pyparser, realcode
    from loadkit.wasm import scenarios as wasm_scenarios
    from loadkit.wasm.host import WasmParser
    from loadkit.wasm.workload import SCALE, SEED

    from loadkit.suite import HIGHER, LOWER, track

    def check_scores(series):
        return score_machine(series, ScoringOptions())

    def wasm_sizes(scale):
        return list(SCALE[scale].sizes)

    def wasm_document(size):
        return realcode.document(wasm_scenarios.SIZES[size], SEED).encode()


try:
    from loadkit.suite import Measured
except ImportError:  # a loadkit from before trials: its runner returns the flat metrics
    Measured = dict

if "method" not in inspect.signature(track).parameters:
    _plain_track = track

    def track(metric, unit, direction, **_declaration):
        """An older package's ``track``: it knows no roles or methods, so the suite's
        declarations of them are left out, and the figure is read as before."""
        return _plain_track(metric, unit, direction)


# Why a figure bound by the host's speed is informational: its ratio to the ceiling
# measured in the same moment is the figure that is gated.
HOST_BOUND = "the host's speed decides it; gated as its ratio to the same-run ceiling"


def host_bound(gate: str) -> str:
    """Why one more figure of a host-bound measurement is informational: the host's speed
    moves it from run to run, and a change of the code behind it shows in ``gate``, a
    figure of the same events that is gated."""
    return f"the host's speed decides it; the same events are gated as {gate}"


__all__ = [
    "HIGHER",
    "HOST_BOUND",
    "LOWER",
    "DashboardServer",
    "Measured",
    "Series",
    "ServerConfig",
    "SimulatedFleet",
    "WasmParser",
    "WorkloadRun",
    "bench_scale",
    "check_scores",
    "dashboard_protocol",
    "host_bound",
    "pyparser",
    "run_workload",
    "score_series",
    "track",
    "wasm_document",
    "wasm_scenarios",
    "wasm_sizes",
]


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
