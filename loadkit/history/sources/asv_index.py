"""asv's published ``index.json``: the commit order asv's own graphs use.

``asv publish`` numbers every commit it has results for by its position in ``git
rev-list --all --date-order --reverse`` (``revision_to_hash``) and draws the graphs in
that order. Along one branch's first-parent line that order is the branch order, so the
published site carries the right order even where no clone of the benchmarked project
is at hand. Commits benchmarked after the last publish are not in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from loadkit.common.errors import UsageError

INDEX_NAME = "index.json"
_HASH = re.compile(r"^[0-9a-f]{7,64}$")


@dataclass(frozen=True)
class AsvIndex:
    """Commits in asv's revision order (oldest first) with the dates asv published."""

    path: Path
    commits: list[str]
    dates: dict[str, int | None]


class IndexFileError(UsageError):
    """The file is missing, unreadable or not an asv ``index.json``."""


def parse_index(data: object, path: Path) -> AsvIndex:
    """Commits ordered by integer revision; raises :class:`IndexFileError` on a foreign file."""
    if not isinstance(data, dict) or not isinstance(data.get("revision_to_hash"), dict):
        raise IndexFileError(f"{path} is not an asv index.json (no revision_to_hash)")
    raw_dates = data.get("revision_to_date")
    raw_dates = raw_dates if isinstance(raw_dates, dict) else {}
    revisions: list[tuple[int, str]] = []
    for revision, commit in data["revision_to_hash"].items():
        try:
            number = int(revision)
        except (TypeError, ValueError):
            raise IndexFileError(f"{path}: revision {revision!r} is not a number") from None
        if not isinstance(commit, str) or not _HASH.match(commit):
            raise IndexFileError(f"{path}: revision {revision} maps to {commit!r}, not a hash")
        revisions.append((number, commit))
    revisions.sort()
    dates: dict[str, int | None] = {}
    for number, commit in revisions:
        date = raw_dates.get(str(number))
        dates[commit] = int(date) if isinstance(date, int | float) else None
    return AsvIndex(path=path, commits=[commit for _, commit in revisions], dates=dates)


def read_index(path: Path) -> AsvIndex:
    """Read and check an ``index.json`` (or the one in an html folder); any problem is an
    :class:`IndexFileError`."""
    if path.is_dir():
        path = path / INDEX_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IndexFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IndexFileError(f"{path} is not valid JSON ({exc})") from None
    return parse_index(data, path)
