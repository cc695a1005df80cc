"""Everything the asv suite in ``benchmarks/`` takes from loadkit, under names that stay.

asv runs the *current* ``benchmarks/`` against each commit's package (``asv run
HEAD~20..HEAD``, a pull request's base), so the suite must not reach into modules that
move. It imports this module only; this module keeps its path and its names from now
on, and a rearranged package changes what stands behind them here, never the suite.
(A package from before this module held the runner has the same names elsewhere:
``benchmarks/common.py`` falls back to them.)
"""

from __future__ import annotations

from loadkit.asvsuite.runner import bench_scale, run_workload
from loadkit.asvsuite.track import track
from loadkit.common.parallel import process_mapper
from loadkit.history.stats.scoring import (
    MAX_WORKERS,
    PARALLEL_FROM,
    ScoringOptions,
    SeriesScore,
    score_machine,
    score_series,
)
from loadkit.history.stats.series import Series
from loadkit.runs.declarations import HIGHER, LOWER
from loadkit.workloads.dashboard import protocol as dashboard_protocol
from loadkit.workloads.dashboard.server import DashboardServer, ServerConfig
from loadkit.workloads.dashboard.sources import SimulatedFleet
from loadkit.workloads.wasm import pyparser, realcode
from loadkit.workloads.wasm import scenarios as wasm_scenarios
from loadkit.workloads.wasm.host import WasmParser
from loadkit.workloads.wasm.workload import SCALE, SEED

__all__ = [
    "HIGHER",
    "LOWER",
    "DashboardServer",
    "ScoringOptions",
    "Series",
    "ServerConfig",
    "SimulatedFleet",
    "WasmParser",
    "bench_scale",
    "check_scores",
    "dashboard_protocol",
    "pyparser",
    "run_workload",
    "score_machine",
    "score_series",
    "track",
    "wasm_document",
    "wasm_scenarios",
    "wasm_sizes",
]


def check_scores(series: list[Series]) -> list[SeriesScore]:
    """Score one machine's series the way ``loadkit check`` does: the machine-level
    path (shared shifts, borrowed noise, false-discovery control), in processes."""
    return score_machine(series, ScoringOptions(), None, process_mapper(PARALLEL_FROM, MAX_WORKERS))


def wasm_sizes(scale: str) -> list[str]:
    """The WASM workload's document sizes at ``scale``, smallest first (``50kb`` ...)."""
    return list(SCALE[scale].sizes)


def wasm_document(size: str) -> bytes:
    """The seeded real-code document of one size label, as the workload parses it."""
    return realcode.document(wasm_scenarios.SIZES[size], SEED).encode()
