"""Benchmarks for loadkit.history: scoring a long asv history must stay fast.

The goal is 200 commits x 100 series scored in under 10 s on 2 cores; this tracks it
with one value per commit (asv's summary) and with 10 recorded samples per commit.
``setup`` only builds the synthetic history.
"""

import numpy as np

from benchmarks.common import Series, check_scores, score_series

COMMITS = 200
SERIES = 100


def _history(samples: int, seed: int = 0) -> list[Series]:
    """A mix of quiet series, steps and drifts, with 2 % noise, like a real suite."""
    rng = np.random.default_rng(seed)
    commits = [f"{i:040x}" for i in range(COMMITS)]
    history = []
    for index in range(SERIES):
        level = np.ones(COMMITS)
        if index % 4 == 1:
            level[rng.integers(20, COMMITS - 20) :] *= 1.1
        elif index % 4 == 2:
            level *= np.linspace(1.0, 1.1, COMMITS)
        measurements = [value * (1 + 0.02 * rng.standard_normal(samples)) for value in level]
        history.append(Series(f"bench.S{index}.time_x", commits, measurements))
    return history


class HistoryScoring:
    """Scoring every series of a 200-commit history: one by one, and as ``loadkit check``
    does."""

    params = [1, 10]
    param_names = ["samples_per_commit"]
    number = 1
    repeat = 3
    rounds = 1
    warmup_time = 0
    timeout = 120

    def setup(self, samples_per_commit):
        self.history = _history(samples_per_commit)

    def time_score_200_commits_100_series(self, samples_per_commit):
        for series in self.history:
            score_series(series)

    def time_check_200_commits_100_series(self, samples_per_commit):
        """All series as one machine, as ``loadkit check`` runs them: shared shifts
        taken out, noise borrowed across series, false-discovery control."""
        check_scores(self.history)
