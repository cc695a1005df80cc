"""One benchmark's history as plain data: what the statistics consume.

A series is one benchmark and one parameter combination on one machine, ordered by
commit. Each commit holds its measurements: asv's raw samples when it recorded them,
otherwise the single summary value, so every statistic handles both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from loadkit.runs.direction import Direction


@dataclass
class Series:
    """Measurements of one benchmark (and parameter combination) by commit, oldest first.

    ``benchmark`` is asv's benchmark key and ``environment`` asv's environment name;
    with the unit they say which other series on the machine behave alike (see
    :attr:`families`).
    """

    name: str
    commits: list[str]
    measurements: list[np.ndarray]
    direction: Direction = Direction.LOWER_IS_BETTER
    unit: str = ""
    summaries: list[dict[str, float]] = field(default_factory=list)
    benchmark: str = ""
    environment: str = ""

    def __post_init__(self) -> None:
        if len(self.commits) != len(self.measurements):
            raise ValueError(
                f"{self.name}: {len(self.commits)} commits but "
                f"{len(self.measurements)} measurement sets"
            )

    @cached_property
    def centres(self) -> np.ndarray:
        """Per-commit medians: the level each commit sits at.

        Commits with the same number of samples are stacked and reduced at once: a
        history has hundreds of commits and every statistic starts from these."""
        sizes = np.array([values.size for values in self.measurements])
        centres = np.empty(sizes.size)
        for size in np.unique(sizes):
            members = np.flatnonzero(sizes == size)
            stacked = np.stack([self.measurements[i] for i in members])
            centres[members] = np.median(stacked, axis=1)
        return centres

    @property
    def has_samples(self) -> bool:
        """True when at least one commit carries more than one raw sample."""
        return any(values.size > 1 for values in self.measurements)

    @property
    def families(self) -> tuple[str, ...]:
        """Groups of alike series, narrowest first: module, unit and environment; unit
        and environment; unit. The noise prior comes from the narrowest that is big
        enough."""
        module = (self.benchmark or self.name).split(".", 1)[0]
        return (
            f"{module}|{self.unit}|{self.environment}",
            f"*|{self.unit}|{self.environment}",
            f"*|{self.unit}|*",
        )

    def up_to(self, commit: str) -> Series:
        """The history as it stood at ``commit`` (a full hash or a unique prefix)."""
        for index, known in enumerate(self.commits):
            if known.startswith(commit):
                stop = index + 1
                return replace(
                    self,
                    commits=self.commits[:stop],
                    measurements=self.measurements[:stop],
                    summaries=self.summaries[:stop],
                )
        raise KeyError(commit)
