"""Simulated machines where every benchmark moves at once, with known truth.

Two kinds of machine look alike at the newest commit and must be told apart from their
history (see :mod:`loadkit.history.stats.shared_moves`):

* a **dedicated machine** (a workstation, a laptop) whose level holds still, where a
  change in the code under every benchmark moves them all by the same factor;
* a **shared runner** whose whole level flips now and then (another machine type, a
  busy neighbour) and comes back a commit or two later, and whose newest commit is one
  more such flip, with no change in the code.

Each machine is scored whole, as ``check`` scores it, and each scenario states how
often ``check`` must (or must not) fail, and for code changes how many of the moved
benchmarks it must list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from loadkit.history.stats.machine_level import is_machine
from loadkit.history.stats.scoring import ScoringOptions, score_machine
from loadkit.history.stats.series import Series
from loadkit.runs.direction import Direction

BENCHMARKS = 12
BETWEEN_SD = 0.02
WITHIN_SD = 0.02
SAMPLES = 10
SCALE_SPREAD = 0.3
# A shared runner: the share of commits that start a flip, how long one lasts (1 or 2
# commits, as django-asv's ubuntu-latest flips in pairs) and its size (log-uniform,
# either way).
FLIP_RATE = 0.12
FLIP_SIZES = (math.log(1.15), math.log(1.6))
LEAST_FLIPS = 2


@dataclass(frozen=True)
class SharedScenario:
    """One row: the machine, its length, the shared move at the newest commit, and the
    requirement on how often ``check`` fails (``at_least``: at least ``bound``)."""

    name: str
    machine: str  # "dedicated" or "lottery"
    reference: int
    move: float  # log factor of the code change at the newest commit
    samples: int
    bound: float
    at_least: bool


SHARED_SCENARIOS: tuple[SharedScenario, ...] = (
    SharedScenario("shared30_after13", "dedicated", 13, math.log(1.3), SAMPLES, 0.95, True),
    SharedScenario("shared30_after13_one_value", "dedicated", 13, math.log(1.3), 1, 0.95, True),
    SharedScenario("shared3x_after1", "dedicated", 1, math.log(3.0), SAMPLES, 0.95, True),
    SharedScenario("shared3x_after1_one_value", "dedicated", 1, math.log(3.0), 1, 0.95, True),
    SharedScenario("dedicated_aa_after13", "dedicated", 13, 0.0, SAMPLES, 0.02, False),
    SharedScenario("lottery_reverts_40", "lottery", 40, 0.0, SAMPLES, 0.02, False),
    SharedScenario("lottery_reverts_13", "lottery", 13, 0.0, SAMPLES, 0.02, False),
)


def _flips(commits: int, rng: np.random.Generator) -> np.ndarray:
    """A shared runner's log level per commit: flips that come back (at least
    ``LEAST_FLIPS`` before the newest commit: a runner known to play the lottery), the
    newest commit in one."""
    while True:
        level = np.zeros(commits)
        flips = 0
        index = 1
        while index < commits - 2:
            if rng.random() < FLIP_RATE:
                length = int(rng.integers(1, 3))
                level[index : min(index + length, commits - 2)] = _flip_size(rng)
                flips += 1
                index += length + 1
            else:
                index += 1
        if flips >= LEAST_FLIPS:
            level[-1] = _flip_size(rng)
            return level


def _flip_size(rng: np.random.Generator) -> float:
    size = float(rng.uniform(*FLIP_SIZES))
    return size if rng.random() < 0.5 else -size


def simulate_shared_machine(scenario: SharedScenario, rng: np.random.Generator) -> list[Series]:
    """``BENCHMARKS`` series over ``reference + 1`` commits: the machine's level (steady
    or flipping, felt by each benchmark by its own amount), each benchmark's own
    scatter, and the code change at the newest commit."""
    commits = scenario.reference + 1
    shared = _flips(commits, rng) if scenario.machine == "lottery" else np.zeros(commits)
    shared[-1] += scenario.move
    names = [f"c{i:04d}" for i in range(commits)]
    series = []
    for index in range(BENCHMARKS):
        scale = BETWEEN_SD * math.exp(SCALE_SPREAD * float(rng.standard_normal()))
        felt = float(rng.uniform(0.8, 1.2))
        levels = felt * shared + scale * rng.standard_normal(commits)
        levels[-1] += (1.0 - felt) * scenario.move  # the code change is the same for all
        base = math.log(float(10 ** rng.uniform(-4, -1)))
        if scenario.samples > 1:
            spread = WITHIN_SD * rng.standard_normal((commits, scenario.samples))
            measurements = list(np.exp(base + levels[:, None] + spread))
        else:
            measurements = [np.array([math.exp(base + v)]) for v in levels]
        series.append(
            Series(
                name=f"bench{index}",
                commits=names,
                measurements=measurements,
                direction=Direction.LOWER_IS_BETTER,
                unit="seconds",
                benchmark=f"suite.bench{index}",
                environment="env",
            )
        )
    return series


@dataclass(frozen=True)
class SharedCell:
    """Measured rates for one shared-move scenario."""

    scenario: str
    machine: str
    reference: int
    samples: int
    machines: int
    check_fail_rate: float
    listed_share: float
    requirement: str
    met: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_shared_cell(
    scenario: SharedScenario, machines: int, seed: int, options: ScoringOptions | None = None
) -> SharedCell:
    """Score ``machines`` simulated machines of one scenario, each whole.

    ``listed_share`` is, over the machines where check failed, the median share of the
    benchmarks listed as failing themselves (not only the machine's row)."""
    options = options or ScoringOptions()
    rng = np.random.default_rng([seed, 500 + SHARED_SCENARIOS.index(scenario)])
    fails = 0
    listed = []
    for _ in range(machines):
        scores = score_machine(simulate_shared_machine(scenario, rng), options)
        failing = [s for s in scores if s.failing]
        if failing:
            fails += 1
            benchmarks = [s for s in scores if not is_machine(s.series)]
            listed.append(sum(s.failing for s in benchmarks) / len(benchmarks))
    rate = fails / machines
    share = float(np.median(listed)) if listed else 0.0
    if scenario.at_least:
        met = rate >= scenario.bound and share >= scenario.bound
        requirement = (
            f"check fails ≥ {scenario.bound:.0%}, benchmarks listed ≥ {scenario.bound:.0%}"
        )
    else:
        met = rate <= scenario.bound
        requirement = f"check fails ≤ {scenario.bound:.0%}"
    return SharedCell(
        scenario=scenario.name,
        machine=scenario.machine,
        reference=scenario.reference,
        samples=scenario.samples,
        machines=machines,
        check_fail_rate=rate,
        listed_share=share,
        requirement=requirement,
        met=met,
    )
