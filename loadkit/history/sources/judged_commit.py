"""Which commit a check judges, and what it must say before judging it.

A check is a statement about one commit. The newest commit in the order is not always
one with numbers: its benchmarks may all have failed (the results file is there, every
value null), or the order source may know commits nobody benchmarked yet. Judging such
a commit compares nothing and reads as a pass; the check instead judges the newest
commit that has results, says which one and why, and a run whose every benchmark
failed fails the check: a failed run is not a pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from loadkit.history.sources.point_table import RunOutcome

SHOWN = 5


@dataclass(frozen=True)
class JudgedCommit:
    """The commit judged, a newer one whose every benchmark failed (with their names),
    the benchmarks that failed at the judged commit, and the lines to print first."""

    commit: str
    failed_run: str | None = None
    failed_run_benchmarks: tuple[str, ...] = ()
    failed_here: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def judged_commit(
    commits: Sequence[str],
    measured: Collection[str],
    outcomes: Mapping[str, RunOutcome],
    newest: str | None = None,
    newer_unmeasured: int = 0,
    order_detail: str = "",
) -> JudgedCommit | None:
    """The commit to judge: ``newest`` (default the last of ``commits``) when it has
    results, else the newest before it that has; None when none has.

    ``measured`` are the commits where at least one benchmark gave a value,
    ``outcomes`` what each commit's files said (benchmarks that failed everywhere),
    ``newer_unmeasured`` how many commits the order source knows after the newest
    one with a results file of this machine (asv's index lists every machine's).
    """
    if not commits:
        return None
    stop = len(commits) if newest is None else commits.index(newest) + 1
    wanted = commits[stop - 1]
    judged = next((c for c in reversed(commits[:stop]) if c in measured), None)
    if judged is None:
        return None
    notes: list[str] = []
    failed_run = None
    failed_run_benchmarks: tuple[str, ...] = ()
    if wanted != judged:
        failed_run = wanted
        names = sorted(outcomes[wanted].failed) if wanted in outcomes else []
        failed_run_benchmarks = tuple(names)
        what = f"every benchmark failed at {wanted[:8]}"
        if names:
            what += f" ({_count(len(names), 'benchmark')}: {_names(names)})"
        notes.append(
            f"{what}; judging {judged[:8]}, the newest commit with results, and failing "
            "the check: a failed run is not a pass"
        )
    if newest is None and newer_unmeasured:
        source = f" in {order_detail}" if order_detail else ""
        notes.append(
            f"{_count(newer_unmeasured, 'newer commit')}{source} ha"
            f"{'s' if newer_unmeasured == 1 else 've'} no results file for this machine; judging "
            f"{judged[:8]}, the newest commit with results"
        )
    outcome = outcomes.get(judged)
    failed_here = tuple(sorted(outcome.failed)) if outcome is not None else ()
    if failed_here:
        total = len(failed_here) + outcome.measured
        notes.append(
            f"{len(failed_here):,} of {_count(total, 'benchmark')} failed at {judged[:8]}: "
            f"{_names(list(failed_here))}"
        )
    return JudgedCommit(judged, failed_run, failed_run_benchmarks, failed_here, notes)
