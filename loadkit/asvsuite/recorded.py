"""The run report from what asv recorded: one measurement, two views.

``loadkit bench`` runs each workload once, inside asv (``benchmarks/common.py``); the
run report - targets, confidence, bottlenecks, recommendations - is then built from the
values asv just wrote for this commit, read through asv's own results API, instead of
running the workloads a second time. So the report and asv's history hold the same
numbers. Each declared ``track_`` (:mod:`loadkit.suite`) names the workload metric its
value is; a workload with no value at all failed (or timed out) in asv.

Reading is :func:`read_commit`; turning values into report blocks is pure
(:func:`workload_metrics`, :func:`entries`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asv import util
from asv.machine import Machine
from asv.results import iter_results_for_machine_and_hash

from loadkit.common.errors import Failure
from loadkit.history.sources.asv_reader import list_machines
from loadkit.runs import workload
from loadkit.runs.declarations import Tracked
from loadkit.runs.run_report import workload_entry
from loadkit.runs.targets import Target


@dataclass
class Recorded:
    """What asv recorded for one workload at one commit and scale."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # benchmarks with no value
    duration_s: float = 0.0


class ResultsView:
    """The few things read from one asv ``Results`` (kept apart so the logic below can
    be fed plain values)."""

    def __init__(self, result: Any) -> None:
        self._result = result

    def keys(self) -> Iterable[str]:
        return self._result.get_all_result_keys()

    def values(self, key: str) -> list[tuple[tuple[str, ...], object]]:
        """Each parameter combination (as asv stores them, repr strings) and its value."""
        params = self._result.get_result_params(key) or []
        values = self._result.get_result_value(key, params)
        combos = list(itertools.product(*params))
        if not params:
            return [((), values[0] if isinstance(values, list) else values)]
        return list(zip(combos, values, strict=True))

    def duration(self, setup_cache_key: str | None) -> float | None:
        if setup_cache_key is None:
            return None
        value = self._result.duration.get(f"<setup_cache {setup_cache_key}>")
        return float(value) if isinstance(value, int | float) else None


def _number(value: object) -> float | None:
    """A recorded value as a finite float; None for a failure or NaN (not measured)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def workload_metrics(
    view: ResultsView, tracked: Sequence[Tracked], scale: str
) -> dict[str, Recorded]:
    """Per workload, the metrics asv recorded at ``scale``; workloads none of whose
    benchmarks are in the results (left out with ``--bench``) are absent."""
    present = set(view.keys())
    wanted = repr(scale)
    out: dict[str, Recorded] = {}
    for t in tracked:
        if t.benchmark not in present:
            continue
        scale_at = t.param_names.index("scale") if "scale" in t.param_names else None
        rows = [
            (combo, value)
            for combo, value in view.values(t.benchmark)
            if scale_at is None or (len(combo) > scale_at and combo[scale_at] == wanted)
        ]
        if not rows:
            continue  # recorded at another scale only
        entry = out.setdefault(t.workload, Recorded())
        for combo, value in rows:
            number = _number(value)
            entry.metrics[t.metric_for(combo)] = number
            if value is None:
                entry.failed.append(t.benchmark)
        duration = view.duration(t.setup_cache_key)
        if duration is not None:
            entry.duration_s = duration
    return out


def entries(
    recorded: Mapping[str, Recorded], scale: str
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Target]]]:
    """Report blocks and targets, workload by workload in the registry's order, as
    ``loadkit run`` makes them from a child's metrics."""
    blocks: dict[str, dict[str, Any]] = {}
    all_targets: dict[str, list[Target]] = {}
    for name in workload.WORKLOADS:
        got = recorded.get(name)
        if got is None:
            continue
        module = workload.load(name)
        targets = module.targets(scale)
        all_targets[name] = targets
        measured = {k: v for k, v in got.metrics.items() if v is not None}
        nothing = not measured and got.failed
        error = None
        if nothing:
            error = (
                f"asv recorded no value for its {len(set(got.failed))} benchmarks: the "
                "scenario failed or timed out (asv's output says which)"
            )
        elif got.failed:
            shown = ", ".join(sorted(set(got.failed))[:3])
            error = f"asv recorded no value for {shown}" + (", …" if len(got.failed) > 3 else "")
        blocks[name] = workload_entry(
            status="error" if nothing else "passed",
            duration_s=got.duration_s,
            metrics=got.metrics,
            targets=targets,
            bottlenecks=module.bottlenecks(measured) if measured else [],
            error=error,
        )
    return blocks, all_targets


def read_commit(results_dir: Path, commit: str, machine: str | None = None) -> ResultsView:
    """asv's results for ``commit`` (the newest file if there are several environments),
    on ``machine`` or, by default, on the machine folder that has them (this host's
    first, as asv chooses)."""

    machines = [machine] if machine else list_machines(results_dir)
    host = Machine.get_unique_machine_name()
    machines.sort(key=lambda m: m != host)
    for name in machines:
        try:
            found = [
                r
                for r in iter_results_for_machine_and_hash(str(results_dir), name, commit)
                if r.commit_hash == commit
            ]
        except util.UserError:
            continue
        if found:
            newest = max(found, key=lambda r: max(r.started_at.values(), default=0))
            return ResultsView(newest)
    raise Failure(f"asv recorded no results for {commit[:8]} in {results_dir}")
