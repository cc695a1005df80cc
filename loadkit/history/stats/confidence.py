"""Turning a test's p-value into a confidence a person can act on.

A p-value of 0.04 is routinely read as "96 % sure", which overstates the evidence by a
wide margin. We use the Sellke–Bayarri–Berger calibration (Am. Stat. 2001): for
``p < 1/e`` the Bayes factor in favour of "no change" is at least ``-e·p·ln p``, so with
even prior odds the probability that a change is real is at most
``1 / (1 - e·p·ln p)``. That bound is what we report as confidence. It is honest about
weak evidence (p = 0.05 gives 0.71, p = 0.003 gives 0.955), and because every p-value
here is computed against the series' own noise (permutations, autocorrelation-corrected
variances, between-commit scatter), the confidence inherits that calibration. The
``calibrate`` command measures how often it is wrong on simulated series.
"""

from __future__ import annotations

import math

from scipy import optimize

_INV_E = 1.0 / math.e


def confidence_from_p(p: float) -> float:
    """Upper bound on the probability that a detected change is real, given its p-value."""
    if not math.isfinite(p) or p >= _INV_E:
        return 0.5 if math.isfinite(p) else 0.0
    if p <= 0.0:
        return 1.0
    bayes_factor_null = -math.e * p * math.log(p)
    return 1.0 / (1.0 + bayes_factor_null)


def p_for_confidence(confidence: float) -> float:
    """The largest p-value whose calibrated confidence still reaches ``confidence``."""
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    return float(
        optimize.brentq(lambda p: confidence_from_p(p) - confidence, 1e-300, _INV_E - 1e-12)
    )
