"""One row per benchmark of a two-commit comparison, whatever happened to it.

A benchmark can be measured on both commits (judged by
:func:`loadkit.history.stats.two_sample.compare_pairs`), exist on one commit only (added
or removed by the change), or fail on one or both. None of these is dropped: a benchmark
the head breaks is the worst news a comparison can bring, and one it adds is news too.
A benchmark the suite declares informational is judged and shown like the others (its
false discoveries controlled among the informational ones), but its regression never
fails the gate: the suite says it is not gated, and the pull request's gate agrees with
``loadkit check``.
Pure: plain values in, rows out.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.two_sample import Paired, TwoSampleResult, compare_pairs
from loadkit.runs.direction import Direction


class Status(enum.Enum):
    """What a row says; the first four are the two-sample verdicts."""

    REGRESSION = "REGRESSION"
    BROKEN = "BROKEN"  # runs on base, fails on head
    INCONCLUSIVE = "INCONCLUSIVE"
    FAILED = "FAILED"  # fails on both
    GONE = "GONE"  # on base only
    NEW = "NEW"  # on head only
    FIXED = "FIXED"  # fails on base, runs on head
    NO_CHANGE = "NO_CHANGE"
    IMPROVEMENT = "IMPROVEMENT"


# Statuses that fail the gate (exit 1); a regression only of a gated benchmark.
FAILING = frozenset({Status.REGRESSION, Status.BROKEN})
_RANK = {status: rank for rank, status in enumerate(Status)}


@dataclass(frozen=True)
class SideData:
    """One commit's measurements: values per round, failed rounds, every key seen.

    ``round_ids[key]`` numbers the round each of ``rounds[key]`` came from; values of
    both sides from one round were measured next to each other and are paired."""

    rounds: Mapping[str, Sequence[float]]
    failed: Mapping[str, int]
    seen: frozenset[str]
    round_ids: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def by_round(self, key: str) -> dict[int, float]:
        ids = self.round_ids.get(key, ())
        return dict(zip(ids, self.rounds.get(key, ()), strict=False))


def common_rounds(base: SideData, head: SideData, key: str) -> tuple[tuple[float, float], ...]:
    """(base, head) of every round both sides measured ``key`` in, in round order."""
    on_base, on_head = base.by_round(key), head.by_round(key)
    return tuple((on_base[r], on_head[r]) for r in sorted(on_base.keys() & on_head.keys()))


@dataclass(frozen=True)
class Row:
    name: str
    status: Status
    unit: str
    direction: Direction
    result: TwoSampleResult | None = None
    base_median: float = math.nan
    head_median: float = math.nan
    gated: bool = True  # False: declared informational, shown but never failing

    @property
    def fails(self) -> bool:
        """Whether this row fails the gate: a gated benchmark confidently worse, or any
        benchmark the head broke (an informational figure is still a workload that ran)."""
        return self.status is Status.BROKEN or (self.gated and self.status in FAILING)

    @property
    def sort_key(self) -> tuple[int, float, str]:
        worse = self.result.worse_change if self.result is not None else 0.0
        return (_RANK[self.status], -worse, self.name)


def _status_of(verdict: Verdict) -> Status:
    return Status(verdict.value)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def family_of(name: str) -> str:
    """Benchmarks of one module share a family (their noise is alike)."""
    return name.split(".", 1)[0] if "." in name else ""


def build_rows(
    base: SideData,
    head: SideData,
    directions: Mapping[str, Direction],
    units: Mapping[str, str],
    confidence: float,
    min_effect: float,
    false_discovery: float,
    known_noise: Mapping[str, tuple[float, float]] | None = None,
    informational: Collection[str] = (),
) -> list[Row]:
    """Every benchmark either commit reported, judged or labelled, worst first.
    ``known_noise`` holds an A/A study's (scale, degrees of freedom) by benchmark;
    ``informational`` names the benchmarks the suite does not gate."""
    names = sorted(base.seen | head.seen)
    paired: list[Paired] = []
    rows: list[Row] = []
    for name in names:
        direction = directions.get(name, Direction.LOWER_IS_BETTER)
        unit = units.get(name, "")
        on_base, on_head = base.rounds.get(name, ()), head.rounds.get(name, ())
        if on_base and on_head and min(*on_base, *on_head) > 0:
            paired.append(
                Paired(
                    name,
                    tuple(on_base),
                    tuple(on_head),
                    direction,
                    family_of(name),
                    common_rounds(base, head, name),
                    (known_noise or {}).get(name),
                )
            )
            continue
        if on_base and on_head:
            # Zero or below (no leaked keys, a negative growth): no ratio to judge. The
            # same constant on both sides is no change; anything else is shown, unjudged.
            same = len({*on_base, *on_head}) == 1
            status = Status.NO_CHANGE if same else Status.INCONCLUSIVE
            rows.append(
                Row(
                    name,
                    status,
                    unit,
                    direction,
                    None,
                    _median(on_base),
                    _median(on_head),
                    name not in informational,
                )
            )
            continue
        if name not in head.seen:
            status = Status.GONE
        elif name not in base.seen:
            status = Status.NEW if on_head else Status.FAILED
        elif on_base:
            status = Status.BROKEN
        elif on_head:
            status = Status.FIXED
        else:
            status = Status.FAILED
        rows.append(
            Row(
                name,
                status,
                unit,
                direction,
                base_median=_median(on_base),
                head_median=_median(on_head),
                gated=name not in informational,
            )
        )
    if paired:
        judged = compare_pairs(
            paired, confidence, min_effect, false_discovery, ungated=frozenset(informational)
        )
        for item, result in zip(paired, judged, strict=True):
            rows.append(
                Row(
                    item.name,
                    _status_of(result.verdict),
                    units.get(item.name, ""),
                    item.direction,
                    result,
                    result.base_median,
                    result.head_median,
                    item.name not in informational,
                )
            )
    return sorted(rows, key=lambda row: row.sort_key)


def exit_code(rows: Sequence[Row]) -> int:
    """1 when a gated benchmark got confidently worse by at least the minimum effect or
    the head broke a benchmark; else 0."""
    return 1 if any(row.fails for row in rows) else 0


def counts(rows: Sequence[Row]) -> dict[Status, int]:
    tally: dict[Status, int] = {}
    for row in rows:
        tally[row.status] = tally.get(row.status, 0) + 1
    return tally
