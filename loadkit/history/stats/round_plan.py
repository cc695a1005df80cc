"""How many rounds a comparison of two commits runs, and in which order.

A shared machine drifts: a neighbour's job starts, a cache warms, the CPU throttles,
and a host can run at half speed for seconds to minutes at a time. Run all of the base
and then all of the head, and the drift is the change. So the two commits alternate,
and at a fine grain: a round is the suite's blocks (its benchmark modules, one workload
each) in turn, and within a block base and head run back to back, A B for one block,
B A for the next, and the next round mirrors the one before. A slow spell that covers
a block slows both of its runs, and the judgement pairs them
(:mod:`loadkit.history.stats.two_sample`); a linear drift adds the same to both sides
over every two rounds.

The number of rounds comes from ``--rounds`` or from a time budget and the noise:
environment builds and the first round are measured, and as many further rounds are
planned as the rest of the budget holds, but no more than the noise needs: once every
benchmark that can see the smallest effect the gate acts on would see it, more rounds
only narrow what is already decided (:func:`rounds_for_noise`).

Fewer than :data:`MIN_ROUNDS` a side cannot be judged at the promised
false-alarm rate (with two rounds a side, a simulated A/A suite shaped like loadkit's
failed 2 % of the time; with three, under 1 %), so a budget that holds fewer still gets
three, and the plan says it overruns.

What the rounds will be able to detect is printed before they run: the first round's
base-head differences, pooled per family as the siblings' jumps are in ``check``
(:func:`loadkit.history.noise.cross_section_prior`), give a scale before any benchmark
has scatter of its own.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loadkit.history.stats.noise import cross_section_prior
from loadkit.history.stats.two_sample import detectable_effect

MIN_ROUNDS = 3
# An upper bound whatever the budget: past this the interval narrows by a few percent.
MAX_ROUNDS = 30


class Side(enum.Enum):
    """Which commit a run measures."""

    BASE = "base"
    HEAD = "head"


def interleaved_order(rounds: int) -> list[Side]:
    """A B B A A B … : round ``i`` runs base first when ``i`` is even."""
    order: list[Side] = []
    for index in range(rounds):
        pair = [Side.BASE, Side.HEAD] if index % 2 == 0 else [Side.HEAD, Side.BASE]
        order.extend(pair)
    return order


def round_runs(round_number: int, blocks: int) -> list[tuple[int, Side]]:
    """The runs of round ``round_number`` (from 1) over ``blocks`` blocks, in order:
    each block's two sides back to back, base first in every other block, the next
    round mirrored (A B, B A, … then B A, A B, …)."""
    if round_number < 1 or blocks < 1:
        raise ValueError("rounds count from 1 and a suite has at least one block")
    runs: list[tuple[int, Side]] = []
    for block in range(blocks):
        first = interleaved_order(round_number + block)[-2:]
        runs.extend((block, side) for side in first)
    return runs


@dataclass(frozen=True)
class RoundPlan:
    """Rounds to run in all (each a run of both commits) and the expected wall time."""

    rounds: int
    expected_s: float
    over_budget: bool


def rounds_for_budget(
    budget_s: float,
    spent_s: float,
    round_s: float,
    done: int,
    max_rounds: int = MAX_ROUNDS,
) -> RoundPlan:
    """Rounds that fit in ``budget_s`` when ``spent_s`` (builds and ``done`` rounds) is
    gone and each further round takes ``round_s``; never fewer than :data:`MIN_ROUNDS`."""
    if round_s <= 0 or not math.isfinite(round_s):
        raise ValueError("a round takes a positive, finite time")
    more = max(math.floor((budget_s - spent_s) / round_s), 0)
    rounds = min(max(done + more, MIN_ROUNDS), max(max_rounds, MIN_ROUNDS))
    expected = spent_s + (rounds - done) * round_s
    return RoundPlan(rounds=rounds, expected_s=expected, over_budget=expected > budget_s)


def first_round_deviations(
    base: Mapping[str, Sequence[float]], head: Mapping[str, Sequence[float]]
) -> dict[str, float]:
    """The first round's log(head / base) for every benchmark both sides measured.

    A value of zero or below (a count of leaked keys or lost messages) has no ratio, so
    such a benchmark gives the plan nothing rather than a division by zero."""
    return {
        key: math.log(head[key][0] / base[key][0])
        for key in base.keys() & head.keys()
        if base[key] and head[key] and base[key][0] > 0 and head[key][0] > 0
    }


def first_round_scales(
    deviations: Mapping[str, float], families: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    """A (scale, degrees of freedom) for every benchmark from one round's
    log(head / base) differences.

    Each difference holds two rounds' noise (variance twice one round's); its family's
    median absolute difference stands for all of them, the whole comparison's where a
    family is too small to say. The degrees of freedom are what that median is worth
    (:func:`loadkit.history.stats.noise.cross_section_prior`): the prior the later
    rounds' own scatter will be moderated with."""
    members: dict[str, list[str]] = defaultdict(list)
    for name in deviations:
        members[families.get(name, "")].append(name)
    everyone = cross_section_prior(np.array(list(deviations.values()), dtype=float), 2.0)
    scales: dict[str, tuple[float, float]] = {}
    for names in members.values():
        prior = cross_section_prior(np.array([deviations[n] for n in names], dtype=float), 2.0)
        prior = prior or everyone
        for name in names:
            scales[name] = (prior.scale, prior.df) if prior is not None else (math.nan, 0.0)
    return scales


def planned_effects(
    scales: Mapping[str, tuple[float, float]],
    rounds: int,
    false_discovery: float,
    min_effect: float,
) -> dict[str, float]:
    """The worsening each benchmark will be found at (80 % power) after ``rounds``.

    The scale will then be known to the prior's degrees of freedom plus the rounds'
    own, ``rounds - 1`` (the scatter of the paired rounds' ratios), as the judgement
    moderates it."""
    tests = len(scales)
    own_df = float(rounds - 1)
    return {
        name: detectable_effect(
            scale, prior_df + own_df, rounds, rounds, tests, false_discovery, min_effect
        )
        if math.isfinite(scale)
        else math.inf
        for name, (scale, prior_df) in scales.items()
    }


def rounds_for_noise(
    scales: Mapping[str, tuple[float, float]],
    target: float,
    false_discovery: float,
    min_effect: float,
    max_rounds: int = MAX_ROUNDS,
) -> int:
    """The fewest rounds (at least :data:`MIN_ROUNDS`) after which every benchmark that
    can be brought to detect ``target`` within ``max_rounds`` does.

    This is how the noise chooses the rounds under a budget: a steady suite stops once
    its figures can see the target, and a benchmark too noisy to see it even after
    ``max_rounds`` does not hold the rest hostage (the plan prints what it will see)."""
    ceiling = max(max_rounds, MIN_ROUNDS)
    reachable = {
        name
        for name, effect in planned_effects(scales, ceiling, false_discovery, min_effect).items()
        if effect <= target
    }
    if not reachable:
        return ceiling
    for rounds in range(MIN_ROUNDS, ceiling):
        effects = planned_effects(scales, rounds, false_discovery, min_effect)
        if all(effects[name] <= target for name in reachable):
            return rounds
    return ceiling
