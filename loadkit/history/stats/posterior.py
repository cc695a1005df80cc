"""How sure a verdict is: the newest commit's true shift, given the noise and the history.

A p-value answers "how odd is this under no change?", not "how likely is a change?".
Read as confidence it overstates where real changes are rare and understates where the
noise is heavy but usually tight. The gate therefore states the posterior probability of
each verdict under a two-groups model (Efron's): most commits leave a benchmark exactly
where it was (δ = 0), a few move it, by a size drawn from a heavy-tailed law.
How few and how far is read off the family's own history: the change points found in
it, per commit. The observed shift is the true one plus a noise draw from the family's
noise law (see :mod:`loadkit.history.stats.laws`).

Then REGRESSION is P(δ > 0), IMPROVEMENT P(δ < 0), NO_CHANGE P(|δ| < margin), each
given the observed shift. A shift of ten noise units on a quiet machine is a confident
regression; a commit that sits where its predecessors sat on a machine whose commits
rarely change is a confident NO_CHANGE even when that machine's noise has heavy tails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loadkit.history.stats.laws import NoiseLaw
from loadkit.history.stats.noise import ChangeLaw

# Quadrature over the true shift: fine near the observation, coarse over the rest.
_FINE_HALF_WIDTH = 40.0
_FINE_POINTS = 801
_COARSE_LIMIT = 12.0
_COARSE_POINTS = 601


@dataclass(frozen=True)
class Posterior:
    """Probabilities of the three readings of the newest commit's true shift δ, and
    how probable "same" was before looking (``same_prior``)."""

    worse: float
    same: float
    better: float
    same_prior: float = 0.0

    @property
    def same_evidence(self) -> float:
        """The Bayes factor for "same": how much the data moved its odds.

        Where commits rarely change things, "same" is likely before any measurement;
        a NO_CHANGE verdict should rest on the measurement too, not on that alone."""
        prior, post = self.same_prior, self.same
        if not 0.0 < prior < 1.0 or post >= 1.0:
            return math.inf if post >= 1.0 else 0.0
        return (post / (1.0 - post)) / (prior / (1.0 - prior))


def posterior(
    worse_shift: float, standard_error: float, law: NoiseLaw, change: ChangeLaw, margin: float
) -> Posterior:
    """P(δ > 0), P(|δ| < margin), P(δ < 0) given the observed worse-positive shift.

    The observed shift is δ + SE·z with z drawn from ``law``; δ is 0 with probability
    ``1 - rate``, else drawn from the change law. Integrals over δ are trapezoid sums
    on a grid fine near the observation (where the noise density lives) and coarse
    across the change law's range.
    """
    fine = worse_shift - standard_error * np.linspace(
        -_FINE_HALF_WIDTH, _FINE_HALF_WIDTH, _FINE_POINTS
    )
    coarse = np.linspace(-_COARSE_LIMIT, _COARSE_LIMIT, _COARSE_POINTS)
    delta = np.unique(np.concatenate([fine, coarse, [-margin, 0.0, margin]]))
    noise = law.pdf((worse_shift - delta) / standard_error) / standard_error
    slab = change.rate * change.density(delta) * noise
    spike = (1.0 - change.rate) * float(law.pdf(np.array([worse_shift / standard_error]))[0])
    spike /= standard_error
    widths = np.diff(delta)
    pieces = 0.5 * (slab[:-1] + slab[1:]) * widths
    middle = 0.5 * (delta[:-1] + delta[1:])
    total = spike + float(np.sum(pieces))
    same_prior = (1.0 - change.rate) + change.rate * change.share_within(margin)
    if total <= 0.0 or not math.isfinite(total):
        return Posterior(worse=0.0, same=0.0, better=0.0, same_prior=same_prior)
    worse = float(np.sum(pieces[middle > 0.0])) / total
    better = float(np.sum(pieces[middle < 0.0])) / total
    same = (spike + float(np.sum(pieces[np.abs(middle) < margin]))) / total
    return Posterior(
        worse=min(worse, 1.0), same=min(same, 1.0), better=min(better, 1.0), same_prior=same_prior
    )
