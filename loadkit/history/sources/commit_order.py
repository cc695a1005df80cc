"""Which commit is newer: the order the gate judges history in, from the best source at hand.

The gate compares the newest commit with the ones before it, so the order decides what
"newest" and "before" mean. The date asv stores in a results file is the author date,
which rebases, cherry-picks and merges leave behind: on a real history it swaps about a
third of neighbouring commits. Better sources, tried in this order:

1. ``--repo``: a local clone of the benchmarked project; the first-parent history of
   the configured branch, as asv graphs it (results off the branch are left out).
2. ``--asv-index``: asv's published ``index.json`` (asv's own graph order).
3. ``repo`` in ``asv.conf.json`` when it is a local git repository (as 1).
4. ``index.json`` in the config's ``html_dir`` (as 2).
5. The stored dates, every commit at risk of being out of place.

Sources the user names come before those found in the config: naming one is asking for
it. The pure ordering (:func:`order_on_branch`, :func:`order_by_index`,
:func:`order_by_date`) is apart from the git and file reading in
:mod:`~loadkit.history.sources.git_history` and :mod:`~loadkit.history.sources.asv_index`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from loadkit.common.errors import UsageError
from loadkit.history.sources.asv_config import AsvConfig
from loadkit.history.sources.asv_index import INDEX_NAME, AsvIndex, IndexFileError, read_index
from loadkit.history.sources.git_history import (
    BranchRef,
    GitError,
    default_branch,
    find_branch,
    first_parent_history,
    is_git_repository,
    unknown_commits,
)

# Where the order came from, as recorded in the check JSON.
REPO_OPTION = "repo_option"
INDEX_OPTION = "asv_index_option"
CONFIG_REPO = "config_repo"
CONFIG_INDEX = "config_asv_index"
COMMIT_DATES = "commit_dates"

Dates = Mapping[str, int | None]


@dataclass(frozen=True)
class CommitOrder:
    """Commits with results, oldest first, and how far to trust their order."""

    commits: list[str]
    source: str
    detail: str
    at_risk: int = 0
    left_out: int = 0
    notes: tuple[str, ...] = field(default=())

    def line(self) -> str:
        """The one line ``check`` prints above its table."""
        clauses = [f"{self.detail}, {len(self.commits):,} commits", *self.notes]
        return "commit order: " + "; ".join(clauses)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "detail": self.detail,
            "commits": len(self.commits),
            "at_risk": self.at_risk,
            "left_out": self.left_out,
        }


# --- pure ordering ----------------------------------------------------------------


def order_on_branch(history: list[str], present: Dates) -> tuple[list[str], list[str]]:
    """The commits with results in branch order, and those off the branch (sorted)."""
    ordered = [commit for commit in history if commit in present]
    on_branch = set(ordered)
    return ordered, sorted(commit for commit in present if commit not in on_branch)


def order_by_date(present: Dates) -> list[str]:
    """Oldest stored date first; ties (and missing dates) by hash, so runs agree."""
    return sorted(present, key=lambda commit: (present[commit] or 0, commit))


def order_by_index(index: AsvIndex, present: Dates) -> tuple[list[str], list[str]]:
    """asv's revision order for the commits it knows; the others placed by date.

    A commit benchmarked after the last ``asv publish`` goes right after the last known
    commit (in asv's order) whose date is not later than its own, so results newer than
    the published site land at the end, where the gate looks. Returns the order and the
    commits placed by date (oldest first, undated last).
    """
    indexed = [commit for commit in index.commits if commit in present]
    known = set(indexed)
    # Without a date there is nothing to place by: such a commit goes last.
    extra = sorted(
        (commit for commit in present if commit not in known),
        key=lambda commit: (present[commit] is None, present[commit] or 0, commit),
    )
    if not extra:
        return indexed, []
    dates = [_date(index.dates.get(commit), present[commit]) for commit in indexed]
    # floor[i]: the smallest date from position i on. It never decreases, so "just after
    # the last known commit dated no later than d" is one bisection.
    floor = dates[:]
    for i in range(len(floor) - 2, -1, -1):
        floor[i] = min(floor[i], floor[i + 1])
    slots: dict[int, list[str]] = {}
    for commit in extra:
        date = present[commit]
        slot = len(indexed) if date is None else bisect.bisect_right(floor, date)
        slots.setdefault(slot, []).append(commit)
    ordered: list[str] = []
    for position in range(len(indexed) + 1):
        ordered.extend(slots.get(position, []))
        if position < len(indexed):
            ordered.append(indexed[position])
    return ordered, extra


def _date(published: int | None, stored: int | None) -> int:
    if published is not None:
        return published
    return stored if stored is not None else 0


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


# --- the sources --------------------------------------------------------------------


@dataclass(frozen=True)
class OrderSources:
    """Where the order may come from; build it with :func:`order_sources`."""

    repo: Path | None = None
    index: AsvIndex | None = None
    config: AsvConfig | None = None
    no_config: str | None = None


def order_sources(
    repo: Path | None, index: Path | None, config: AsvConfig | None, no_config: str | None
) -> OrderSources:
    """Check the sources the user named before any results are read: a ``--repo`` that
    is no git repository and an ``--asv-index`` that cannot be read are usage errors."""
    if repo is not None:
        repo = repo.expanduser().resolve()
        if not is_git_repository(repo):
            raise UsageError(f"--repo {repo} is not a git repository (no .git or objects in it)")
    read = read_index(index.expanduser().resolve()) if index is not None else None
    return OrderSources(repo=repo, index=read, config=config, no_config=no_config)


def resolve_commit_order(
    present: Dates, sources: OrderSources, warn: Callable[[str], None]
) -> CommitOrder:
    """The order of the commits in ``present`` (hash -> stored date) from the best source.

    A named source that cannot give it is a usage error; a configured one that cannot
    is passed over (with a warning when it looks like a mistake), down to the dates.
    """
    config = sources.config
    branch = config.branch if config is not None else None
    passed_over: list[str] = []
    if sources.repo is not None:
        order = _from_git(sources.repo, branch, present, REPO_OPTION, "--repo")
        if isinstance(order, str):
            raise UsageError(order)
        return order
    if sources.index is not None:
        order = _from_index(sources.index, present, INDEX_OPTION)
        if order is None:
            raise UsageError(
                f"{sources.index.path} knows none of the {len(present):,} commits with "
                "results: is it the index of another project?"
            )
        return order
    if config is None:
        passed_over.append(sources.no_config or "no asv.conf.json")
    else:
        found = _from_config_repo(config, present, warn)
        if isinstance(found, CommitOrder):
            return found
        passed_over.append(found)
        found = _from_config_index(config, present, warn)
        if isinstance(found, CommitOrder):
            return found
        passed_over.append(found)
    why = "; ".join(passed_over)
    commits = order_by_date(present)
    warn(
        f"ordering {_count(len(commits), 'commit')} by the dates asv recorded ({why}): all "
        f"{len(commits):,} are at risk of being out of order, as dates survive rebases and "
        "cherry-picks; pass --repo with a clone of the benchmarked project or --asv-index "
        "with asv's published index.json"
    )
    return CommitOrder(
        commits=commits,
        source=COMMIT_DATES,
        detail=f"commit dates asv recorded ({why})",
        at_risk=len(commits),
        notes=(f"all {len(commits):,} at risk of being out of order",),
    )


def _from_git(
    repo: Path, branch: str | None, present: Dates, source: str, how: str
) -> CommitOrder | str:
    """The branch order from a git repository, or why it cannot be had."""
    try:
        wanted = branch if branch is not None else default_branch(repo)
        ref = find_branch(repo, wanted)
        if ref is None:
            return f"{how} {repo} has no branch {wanted!r}, local or remote-tracking"
        history = first_parent_history(repo, ref.ref)
        ordered, off_branch = order_on_branch(history, present)
        unknown = unknown_commits(repo, off_branch)
    except GitError as exc:
        return f"cannot read the history of {how} {repo}: {exc}"
    if present and not ordered:
        return (
            f"none of the {len(present):,} commits with results is on {ref.name} in {how} "
            f"{repo}: is it a clone of the benchmarked project?"
        )
    return CommitOrder(
        commits=ordered,
        source=source,
        detail=_git_detail(ref, repo, how),
        left_out=len(off_branch),
        notes=_left_out_notes(ref, len(off_branch), len(unknown)),
    )


def _git_detail(ref: BranchRef, repo: Path, how: str) -> str:
    detail = f"first-parent history of {ref.name} in {repo} ({how}"
    if ref.remote:
        detail += f"; no local branch {ref.branch}"
    return detail + ")"


def _left_out_notes(ref: BranchRef, left_out: int, unknown: int) -> tuple[str, ...]:
    if not left_out:
        return ()
    note = f"{_count(left_out, 'commit')} not on {ref.name} left out"
    if unknown:
        note += f" ({unknown:,} unknown to the repository: fetch it)"
    return (note,)


def _from_index(index: AsvIndex, present: Dates, source: str) -> CommitOrder | None:
    """asv's order from an index; None when the index knows none of the commits."""
    ordered, by_date = order_by_index(index, present)
    if present and len(by_date) == len(present):
        return None
    notes = (f"{_count(len(by_date), 'commit')} not in index.json placed by date",)
    return CommitOrder(
        commits=ordered,
        source=source,
        detail=f"asv index.json ({index.path})",
        at_risk=len(by_date),
        notes=notes if by_date else (),
    )


def _from_config_repo(
    config: AsvConfig, present: Dates, warn: Callable[[str], None]
) -> CommitOrder | str:
    path = config.repo_path
    if path is None:
        return f"the configured repository is a URL, {config.repo}"
    if not path.exists():
        return f"the configured repository {path} does not exist"
    if not is_git_repository(path):
        return f"the configured repository {path} is not a git repository"
    order = _from_git(path, config.branch, present, CONFIG_REPO, "asv.conf.json repo")
    if isinstance(order, str):
        warn(f"{order}; trying the next source of commit order")
    return order


def _from_config_index(
    config: AsvConfig, present: Dates, warn: Callable[[str], None]
) -> CommitOrder | str:
    path = config.html_dir / INDEX_NAME
    if not path.is_file():
        return f"no {INDEX_NAME} in {config.html_dir}"
    try:
        index = read_index(path)
    except IndexFileError as exc:
        warn(f"{exc}; trying the next source of commit order")
        return f"{path} is unreadable"
    order = _from_index(index, present, CONFIG_INDEX)
    if order is None:
        reason = f"{path} knows none of the {len(present):,} commits with results"
        warn(f"{reason}; trying the next source of commit order")
        return reason
    return order
