"""Results files the reader had to skip, said once per reason rather than once per file.

A results folder of an asv too old for the installed one holds hundreds of files that
all fail for the same reason; a line per file buries the one thing to do (``asv
update``). So skips are grouped by kind: each kind is one line with a count, up to three
example names and what would fix it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

EXAMPLES = 3


class SkipKind(enum.Enum):
    """Why a file could not be read, in the terms of what to do about it."""

    OLD_FORMAT = "old_format"
    NEWER_FORMAT = "newer_format"
    NOT_JSON = "not_json"
    OTHER_MACHINE = "other_machine"
    NOT_RESULTS = "not_results"


@dataclass(frozen=True)
class SkippedFile:
    """One file left out: its name in the machine folder, why, and asv's own words."""

    name: str
    kind: SkipKind
    reason: str

    def describe(self) -> str:
        return f"{self.name}: {self.reason}"


def classify(asv_message: str) -> SkipKind:
    """Sort one of asv's ``UserError`` messages from ``Results.load`` into a kind."""
    if "asv update" in asv_message or "old file format" in asv_message:
        return SkipKind.OLD_FORMAT
    if "newer than what this version of asv" in asv_message:
        return SkipKind.NEWER_FORMAT
    if "Error parsing JSON" in asv_message:
        return SkipKind.NOT_JSON
    if "machine name is not" in asv_message:
        return SkipKind.OTHER_MACHINE
    return SkipKind.NOT_RESULTS


def summary_lines(skipped: list[SkippedFile], machine: str) -> list[str]:
    """One line per kind of skip, in a fixed order; files are never changed."""
    by_kind: dict[SkipKind, list[str]] = {}
    for item in skipped:
        by_kind.setdefault(item.kind, []).append(item.name)
    lines = []
    for kind in SkipKind:
        names = sorted(by_kind.get(kind, []))
        if names:
            lines.append(_line(kind, names, machine))
    return lines


def _line(kind: SkipKind, names: list[str], machine: str) -> str:
    count = len(names)
    files = f"skipped {count:,} file{'' if count == 1 else 's'} in {machine}/"
    examples = ", ".join(names[:EXAMPLES]) + (", …" if count > EXAMPLES else "")
    if kind is SkipKind.OLD_FORMAT:
        return (
            f"{files}: stored in an old asv results format (left as they are); `asv update`, "
            "run in the benchmark project, migrates them"
        )
    if kind is SkipKind.NEWER_FORMAT:
        return f"{files}: written by a newer asv than this one ({examples}); update asv"
    if kind is SkipKind.NOT_JSON:
        return f"{files}: not valid JSON ({examples})"
    if kind is SkipKind.OTHER_MACHINE:
        return f"{files}: recorded on another machine ({examples})"
    return f"{files}: not asv results ({examples})"
