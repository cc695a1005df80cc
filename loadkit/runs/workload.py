"""What a workload is, and the registry of workloads ``loadkit run`` knows.

A workload is a module that satisfies :class:`Workload`: ``targets(scale)``, an async
``run(ctx)`` that measures, and ``bottlenecks(metrics)`` that reads its own metrics for
known failure shapes. The registry maps names to module paths so the orchestrator can
run each workload in a fresh child process (crash and timeout isolation, clean RSS
figures) without importing them all, and so nothing below the workloads imports one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

from loadkit.common.errors import UsageError
from loadkit.redis_io.keyspace import new_run_id
from loadkit.runs.targets import Target

# smoke: seconds per workload, for checking that the suite runs (its figures are not
# comparable with the others); quick: the everyday scale; full: the stated goals' sizes.
SCALES: tuple[str, ...] = ("smoke", "quick", "full")

# name -> (module, one-line description)
WORKLOADS: dict[str, tuple[str, str]] = {
    "fleet": (
        "loadkit.workloads.fleet.workload",
        "spawn, allocate, autoscale and clean up agents on Redis",
    ),
    "swarm": (
        "loadkit.workloads.swarm.workload",
        "100 swarms: streams, fenced leaders, crash recovery",
    ),
    "dashboard": (
        "loadkit.workloads.dashboard.workload",
        "1000+ live WebSocket clients, polling, restart",
    ),
    "wasm": (
        "loadkit.workloads.wasm.workload",
        "WASM expression parser vs pure Python: speed, limits",
    ),
}
# Workloads that write to the Redis they are given (under their run id's prefixes).
USES_REDIS: frozenset[str] = frozenset({"fleet", "swarm"})


@dataclass
class RunContext:
    """What a workload gets from the runner."""

    redis_url: str
    scale: str = "quick"
    progress: Callable[[str, float], None] = field(default=lambda phase, fraction: None)
    # Where a workload may write plots; None when the run keeps no files.
    artifacts_dir: Path | None = None
    # Starts the name of every key the run writes (see loadkit.redis_io.keyspace), so the run's
    # keys can be deleted by whoever knows it, even after the run was killed.
    run_id: str = field(default_factory=new_run_id)

    def artifact(self, filename: str) -> Path | None:
        """A path for a plot inside the run's artifacts folder (None: don't plot)."""
        if self.artifacts_dir is None:
            return None
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        return self.artifacts_dir / filename


@dataclass
class WorkloadOutput:
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    # label -> file name inside the artifacts folder (plots the report links to)
    artifacts: dict[str, str] = field(default_factory=dict)


def resolve(names: list[str] | None) -> list[str]:
    """Validate workload names (all when none given), keeping the user's order."""
    if not names:
        return list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise UsageError(f"unknown workload {unknown[0]!r}; available: {', '.join(WORKLOADS)}")
    return list(dict.fromkeys(names))


class Workload(Protocol):
    """The contract of a workload module (a module satisfies it structurally)."""

    def targets(self, scale: str) -> list[Target]:
        """What the workload's metrics must meet at ``scale``."""
        ...

    async def run(self, ctx: RunContext) -> WorkloadOutput:
        """Measure once, at ``ctx.scale``; flat metrics with units in their names."""
        ...

    def bottlenecks(self, metrics: dict[str, float]) -> list[str]:
        """Known failure shapes read from the workload's own metrics."""
        ...


CONTRACT: tuple[str, ...] = ("targets", "run", "bottlenecks")


def load(name: str) -> Workload:
    """The workload module registered as ``name``, checked against the contract."""
    module = importlib.import_module(WORKLOADS[name][0])
    missing = [part for part in CONTRACT if not callable(getattr(module, part, None))]
    if missing:
        raise TypeError(f"workload {name} ({module.__name__}) lacks {', '.join(missing)}")
    return cast(Workload, module)
