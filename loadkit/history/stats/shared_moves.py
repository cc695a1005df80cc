"""When every benchmark moves at once: a runner lottery, or a change in the code?

The machine's shift (:mod:`loadkit.history.stats.machine_level`) is taken out of each
benchmark because on shared CI runners a whole job lands on a faster or slower machine
now and then and comes back a commit or two later. On a dedicated machine the same
arithmetic hides the one thing that matters: a change under everything — a decorator
every function goes through, a dependency pin — moves every benchmark at the same
commit, and it is a regression of each of them.

What tells the two apart is what the group's own history holds:

* a **shared move** at a commit is one where at least ``SHARED_SHARE`` of the group's
  benchmarks moved the same way, each beyond its own noise;
* a **runner lottery** is a shared move that came back within ``REVERT_WITHIN``
  commits. Past shared moves that reverted (of at least a quarter of the size, and at
  least ``LEAST_LOTTERY``) say this machine plays the lottery; a machine whose level
  never moved like that says it does not;
* a move that has **persisted** past ``REVERT_WITHIN`` commits is no lottery;
* with **a short history** (fewer than ``SHORT_HISTORY`` commits before the move) there
  is no record either way; only a move of at least ``SHORT_MOVE`` (2x) counts as a code
  change there, far beyond what a runner swap does.

A move judged a code change is left in what each benchmark's gate compares (each is
judged beyond its own noise, with its own effect), and the group's row is judged by
how many of its benchmarks moved the same way.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SHARED_SHARE = 0.8
REVERT_WITHIN = 3
SHORT_HISTORY = 5
SHORT_MOVE = math.log(2.0)
# How far beyond its own scatter (robust SDs) a benchmark must move to count as moved,
# and the smallest move (log) counted at all.
BEYOND_OWN = 3.0
_SMALLEST_MOVE = 0.01
# A shared move must also stand this far out of the group's own shift history.
BEYOND_GROUP = 4.0
# The smallest earlier reverted move that counts as a lottery, and its least share of
# the move being judged: runner swaps differ in size, a steady machine has none.
LEAST_LOTTERY = math.log(1.05)
LOTTERY_SHARE = 0.25
_MAD_TO_SD = 1.4826


class MoveKind(enum.Enum):
    CODE = "code change"
    LOTTERY = "runner lottery"


@dataclass(frozen=True)
class SharedMove:
    """A shared move of one group that holds through the newest commit.

    ``start`` is the index (in the group's commits) of the commit that moved, ``size``
    the group's move (log, slower positive), ``share`` the fraction of benchmarks that
    moved with it at ``start``, ``lotteries`` how many earlier shared moves (see
    ``LEAST_LOTTERY``) reverted, ``persisted`` how many commits it has held (``start``
    included), ``reference`` how many commits came before it.
    """

    start: int
    commit: str
    size: float
    share: float
    kind: MoveKind
    lotteries: int
    persisted: int
    reference: int

    @property
    def short_history(self) -> bool:
        return self.reference < SHORT_HISTORY

    def describe(self, group: str) -> str:
        """One line for the check's notes."""
        moved = f"{100.0 * (math.exp(self.size) - 1.0):+.0f}%"
        head = (
            f"{group}: {self.share:.0%} of the benchmarks moved together at "
            f"{self.commit[:8]} ({moved})"
        )
        if self.kind is MoveKind.LOTTERY:
            return (
                f"{head}, read as a runner lottery: {self.lotteries} earlier shared move"
                f"{'' if self.lotteries == 1 else 's'} came back within {REVERT_WITHIN} "
                "commits; it is taken out of each benchmark and fails nothing"
            )
        if self.persisted > REVERT_WITHIN:
            why = f"it has held for {self.persisted} commits"
        elif self.short_history:
            why = (
                f"the history is short ({self.reference} reference commit"
                f"{'' if self.reference == 1 else 's'}) and the move is beyond what a "
                "runner swap does"
            )
        else:
            why = f"the level held still through {self.reference} commits before it"
        return f"{head}, read as a code change: {why}; each benchmark is judged with it"


def robust_sd(values: np.ndarray) -> float:
    """Scale from the median absolute deviation around the median (0 for < 2 values)."""
    if values.size < 2:
        return 0.0
    return _MAD_TO_SD * float(np.median(np.abs(values - np.median(values))))


def moved_together(residuals: np.ndarray, own_noise: np.ndarray, shift: float) -> tuple[float, int]:
    """The share of benchmarks present at a commit that moved with the group's ``shift``,
    each beyond ``BEYOND_OWN`` of its own noise; and how many were present.

    ``residuals`` hold each benchmark's move at the commit (log, slower positive; NaN
    where it did not run), ``own_noise`` each one's scatter (log SD)."""
    present = np.isfinite(residuals)
    count = int(present.sum())
    if count == 0 or shift == 0.0:
        return 0.0, count
    floor = np.maximum(BEYOND_OWN * own_noise[present], _SMALLEST_MOVE)
    moved = (np.sign(residuals[present]) == np.sign(shift)) & (np.abs(residuals[present]) >= floor)
    return float(moved.mean()), count


def find_shared_move(
    commits: Sequence[str], shifts: np.ndarray, shares: np.ndarray
) -> SharedMove | None:
    """The shared move that holds through the newest commit, and what it is read as.

    ``shifts`` is the group's shift per commit (log, slower positive, oldest first),
    ``shares`` the share of its benchmarks that moved with it at each commit. The move
    starts at the earliest commit from which every commit to the newest is a shared
    move the same way; None when the newest commit is not one.
    """
    n = len(commits)
    if n < 2:
        return None
    shared = shares >= SHARED_SHARE

    def is_move(i: int, sign: float) -> bool:
        return bool(shared[i]) and np.sign(shifts[i]) == sign and shifts[i] != 0.0

    sign = float(np.sign(shifts[-1]))
    if not is_move(n - 1, sign):
        return None
    start = n - 1
    while start - 1 >= 1 and is_move(start - 1, sign):
        start -= 1
    size = float(np.median(shifts[start:]))
    before = shifts[:start]
    spread = robust_sd(before)
    if before.size >= SHORT_HISTORY and abs(size) < BEYOND_GROUP * spread:
        return None  # within what this group's level does anyway
    least = max(LEAST_LOTTERY, LOTTERY_SHARE * abs(size))
    lotteries = _reverted_moves(before, shared[:start], least)
    persisted = n - start
    if persisted > REVERT_WITHIN:
        kind = MoveKind.CODE
    elif before.size < SHORT_HISTORY:
        kind = MoveKind.CODE if abs(size) >= SHORT_MOVE and lotteries == 0 else MoveKind.LOTTERY
    else:
        kind = MoveKind.LOTTERY if lotteries else MoveKind.CODE
    return SharedMove(
        start=start,
        commit=commits[start],
        size=size,
        share=float(shares[start]),
        kind=kind,
        lotteries=lotteries,
        persisted=persisted,
        reference=start,
    )


def _reverted_moves(shifts: np.ndarray, shared: np.ndarray, least: float) -> int:
    """Shared moves of at least ``least`` (log) that came back within ``REVERT_WITHIN``
    commits: the level returned below half the move."""
    count = 0
    i = 0
    while i < shifts.size:
        if shared[i] and abs(shifts[i]) >= least:
            later = shifts[i + 1 : i + 1 + REVERT_WITHIN]
            if later.size and np.any(np.abs(later) < abs(shifts[i]) / 2.0):
                count += 1
                i += int(np.argmax(np.abs(later) < abs(shifts[i]) / 2.0)) + 1
                continue
        i += 1
    return count


def sign_test(moves: np.ndarray, confidence: float) -> tuple[float, float, float, float, float]:
    """The group's move from its benchmarks' own moves (log, slower positive): the
    median, a distribution-free interval for it at ``confidence`` (binomial order
    statistics), and the one-sided sign-test p-values that it is slower / faster.

    Each benchmark is one vote: with no shared change each would land either side of
    its reference alike, so twelve of twelve one way happens once in 4,096 draws.
    """
    finite = np.sort(moves[np.isfinite(moves)])
    n = finite.size
    if n == 0:
        return 0.0, -math.inf, math.inf, 1.0
    median = float(np.median(finite))
    tail = (1.0 - confidence) / 2.0
    low_rank = int(stats.binom.ppf(tail, n, 0.5))
    high_rank = n - 1 - low_rank
    low = float(finite[low_rank - 1]) if low_rank >= 1 else -math.inf
    high = float(finite[high_rank + 1]) if high_rank + 1 < n else math.inf
    slower = int(np.sum(finite > 0))
    faster = int(np.sum(finite < 0))
    p_slower = float(stats.binom.sf(slower - 1, n, 0.5))
    p_faster = float(stats.binom.sf(faster - 1, n, 0.5))
    return median, low, high, min(p_slower, 1.0), min(p_faster, 1.0)
