"""Targets and target-based confidence: pure functions over measured metrics.

A "less is better" check scores
``min(1, target / value)``, a "more is better" check ``min(1, value / target)``; a
workload's confidence is the mean of its check scores and the run's is the mean over
workloads. A workload passes at confidence >= 0.75 with no error. A check whose metric
was not measured scores 0 and says so: a missing number is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["<", "<=", ">", ">="]
PASS_CONFIDENCE = 0.75
HEADROOM = 0.20  # a passing check within 20% of its target earns a LOW recommendation


@dataclass(frozen=True)
class Target:
    metric: str
    op: Op
    target: float
    why: str = ""

    @property
    def less_is_better(self) -> bool:
        return self.op in ("<", "<=")


def holds(op: Op, value: float, target: float) -> bool:
    return {
        "<": value < target,
        "<=": value <= target,
        ">": value > target,
        ">=": value >= target,
    }[op]


def score(target: Target, value: float | None) -> float:
    """Score in [0, 1] for one measured value against one target."""
    if value is None or not math.isfinite(value):
        return 0.0
    if holds(target.op, value, target.target):
        return 1.0
    if target.less_is_better:
        return 0.0 if value <= 0 else max(0.0, min(1.0, target.target / value))
    return 0.0 if target.target <= 0 else max(0.0, min(1.0, value / target.target))


def headroom(target: Target, value: float) -> float | None:
    """Relative distance from the target on the passing side (None when not meaningful)."""
    if target.target == 0:
        return None
    if target.less_is_better:
        return (target.target - value) / abs(target.target)
    return (value - target.target) / abs(target.target)


def evaluate(targets: Sequence[Target], metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """One check record per target, in the report schema's shape."""
    checks = []
    for t in targets:
        value = metrics.get(t.metric)
        passed = value is not None and math.isfinite(value) and holds(t.op, value, t.target)
        checks.append(
            {
                "metric": t.metric,
                "op": t.op,
                "target": t.target,
                "value": value,
                "score": round(score(t, value), 4),
                "passed": bool(passed),
            }
        )
    return checks


def confidence(checks: Sequence[Mapping[str, Any]]) -> float:
    """Mean check score; a workload with no checks has no evidence, so 0."""
    if not checks:
        return 0.0
    return round(sum(float(c["score"]) for c in checks) / len(checks), 4)


def overall_confidence(per_workload: Sequence[float]) -> float:
    if not per_workload:
        return 0.0
    return round(sum(per_workload) / len(per_workload), 4)
