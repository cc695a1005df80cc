"""What the history page shows, as plain data: series grouped by suite, class and
benchmark, parameters folded into one row, and the summary counts.

Kept apart from the HTML so the grouping and ordering can be tested without a browser:
the page must put the failing rows first and fold a benchmark's parameter combinations
(and environments) into one row, for any project's module layout.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from loadkit.history.stats.gate import Verdict
from loadkit.history.stats.machine_level import MACHINE_PREFIX
from loadkit.history.stats.scoring import SeriesScore

VERDICT_ORDER = (Verdict.REGRESSION, Verdict.IMPROVEMENT, Verdict.NO_CHANGE, Verdict.INCONCLUSIVE)
MACHINE_SUITE = "machine"


def slug(name: str, used: set[str]) -> str:
    """A file-system- and URL-safe, unique stem for a series name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120] or "series"
    candidate, counter = base, 1
    while candidate in used:
        counter += 1
        candidate = f"{base}_{counter}"
    used.add(candidate)
    return candidate


def split_benchmark(benchmark: str) -> tuple[str, str, str]:
    """(suite, class, function) of an asv benchmark name.

    asv names are dotted module paths, then an optional class, then the function: the
    suite is the top module, the class everything between it and the function (the
    submodules and the class, when there is one). A module-level function has no class.
    """
    if benchmark == MACHINE_PREFIX:
        return MACHINE_SUITE, "", benchmark
    parts = benchmark.split(".")
    if len(parts) == 1:
        return parts[0], "", parts[0]
    return parts[0], ".".join(parts[1:-1]), parts[-1]


def is_flagged(score: SeriesScore) -> bool:
    """Series whose full plot is worth opening right away: anything the gate or the
    change-point search says moved."""
    return (
        score.failing
        or score.regression_detected
        or score.verdict in (Verdict.REGRESSION, Verdict.IMPROVEMENT)
        or bool(score.recent_shifts)
    )


@dataclass(frozen=True)
class Member:
    """One series of a benchmark row: its parameters and environment, and its place in
    the worst-first order of the whole machine."""

    score: SeriesScore
    label: str
    slug: str
    rank: int


@dataclass(frozen=True)
class BenchmarkRow:
    """One benchmark, all its parameter combinations and environments folded in."""

    benchmark: str
    function: str
    members: list[Member]

    @property
    def rank(self) -> int:
        return min(member.rank for member in self.members)

    @property
    def worst(self) -> Member:
        return min(self.members, key=lambda member: member.rank)


@dataclass(frozen=True)
class ClassGroup:
    name: str
    rows: list[BenchmarkRow]


@dataclass(frozen=True)
class Suite:
    name: str
    classes: list[ClassGroup]


def member_label(score: SeriesScore) -> str:
    """The series name less its benchmark: parameters and environment, or nothing."""
    series = score.series
    benchmark = series.benchmark or series.name
    name = series.name
    return name[len(benchmark) :].strip() if name.startswith(benchmark) else name


def group_scores(scores: Sequence[SeriesScore]) -> list[Suite]:
    """Suites, classes and benchmarks ordered by their worst series (``scores`` come
    worst first, as ``check`` prints them); members within a row in name order."""
    used: set[str] = set()
    rows: dict[str, list[Member]] = {}
    for rank, score in enumerate(scores):
        benchmark = score.series.benchmark or score.series.name
        member = Member(score, member_label(score), slug(score.series.name, used), rank)
        rows.setdefault(benchmark, []).append(member)
    tree: dict[str, dict[str, list[BenchmarkRow]]] = {}
    for benchmark, members in rows.items():
        suite, klass, function = split_benchmark(benchmark)
        members.sort(key=lambda member: member.score.series.name)
        row = BenchmarkRow(benchmark, function, members)
        tree.setdefault(suite, {}).setdefault(klass, []).append(row)
    suites = []
    for suite, classes in tree.items():
        groups = [
            ClassGroup(klass, sorted(rows_, key=lambda row: row.rank))
            for klass, rows_ in classes.items()
        ]
        groups.sort(key=lambda group: group.rows[0].rank)
        suites.append(Suite(suite, groups))
    suites.sort(key=lambda suite: suite.classes[0].rows[0].rank)
    return suites


def verdict_counts(scores: Sequence[SeriesScore]) -> dict[Verdict, int]:
    """How many series got each verdict, every verdict listed (zero included)."""
    counts = Counter(score.verdict for score in scores)
    return {verdict: counts.get(verdict, 0) for verdict in VERDICT_ORDER}


def history_length(scores: Sequence[SeriesScore]) -> int:
    """The most commits any series has: 1 on the first run."""
    return max((len(score.series.commits) for score in scores), default=0)
