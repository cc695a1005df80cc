"""Which way is worse for a benchmark: the sign every verdict depends on.

asv records times, memory and arbitrary ``track_`` numbers in one format; a slower
``time_`` result is a regression, a lower messages-per-second ``track_`` result is one
too. Getting this wrong silently inverts every verdict, so the rule lives in one place.
"""

from __future__ import annotations

import enum
import re


class Direction(enum.Enum):
    """Whether larger values of a benchmark are worse or better."""

    LOWER_IS_BETTER = "lower_is_better"
    HIGHER_IS_BETTER = "higher_is_better"

    @property
    def sign(self) -> int:
        """+1 when an increase is a regression, -1 when a decrease is."""
        return 1 if self is Direction.LOWER_IS_BETTER else -1


# Units or names that say "amount per unit time", or a score or success share that
# should grow. A bare "ratio" says nothing (an overshoot ratio should shrink), so only
# ratios of something good count.
_HIGHER_BETTER = re.compile(
    r"(per[_ ]?s(ec(ond)?)?(?![a-z])|/s(?![a-z])|(?<![a-z])(ops|qps|rps|hz)(?![a-z])|"
    r"throughput|(hit|success|recovery|reconnect|scaling)s?_ratio|speedup|bandwidth|"
    r"share_of|equivalent)",
    re.IGNORECASE,
)
# Names that say a duration, a size, or something that should not happen.
_LOWER_BETTER = re.compile(
    r"(_(ms|s|kib|mib|bytes)$|leaked|lost|missed|stale|dropped|duplicated|overshoot|residual|"
    r"reconnects$)",
    re.IGNORECASE,
)
_LOWER_BETTER_PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_")


def direction_from_name(name: str) -> Direction | None:
    """The direction a metric or benchmark name states, or None when it states none.

    One rule for asv series and for run-report metrics (``loadkit.runs.run_report``), so a
    recovery ratio cannot be "better when lower" in one place and not in the other."""
    if _HIGHER_BETTER.search(name):
        return Direction.HIGHER_IS_BETTER
    if _LOWER_BETTER.search(name):
        return Direction.LOWER_IS_BETTER
    return None


def infer_direction(name: str, unit: str | None = None, declared: str | None = None) -> Direction:
    """Decide the direction from a declared attribute, the unit, then the name.

    ``declared`` is an explicit choice (e.g. a benchmark attribute ``direction`` of
    "higher_is_better"); it wins because only the author knows. Otherwise ``time_``,
    ``mem_`` and ``peakmem_`` benchmarks get worse upward (asv's own convention), a
    ``track_`` result whose unit or name says "per second" (or a success share, a
    speedup) gets worse downward, and anything else gets worse upward.
    """
    if declared:
        text = declared.strip().lower().replace("-", "_").replace(" ", "_")
        if text in {"higher_is_better", "higher", "up", "increase"}:
            return Direction.HIGHER_IS_BETTER
        if text in {"lower_is_better", "lower", "down", "decrease"}:
            return Direction.LOWER_IS_BETTER
    last = name.rsplit(".", 1)[-1]
    if last.startswith(_LOWER_BETTER_PREFIXES):
        return Direction.LOWER_IS_BETTER
    if unit and _HIGHER_BETTER.search(unit):
        return Direction.HIGHER_IS_BETTER
    return direction_from_name(last) or Direction.LOWER_IS_BETTER
