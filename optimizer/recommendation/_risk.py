"""How risky the answer is: the probability that a fresh seed diverges there, with an upper
bound a user can trust.

The evidence is the seeds of the trials *at least as risky* as the answer and close to it:
a learning rate at or above the answer's but within ``BAND_DECADES`` of it, an ``eps_root`` at
or below it (ACProp's edge only rises with ``eps_root``), the other tuned settings within the
comparability radius. Divergence only gets more likely as the learning rate grows and
``eps_root`` falls, so those seeds' divergence rate bounds the answer's from above. Of ``n``
such seeds ``d`` diverged:

- the estimate is the posterior mean under Jeffreys' prior, ``(d + 1/2) / (n + 1)``; with no
  such seed, the divergence model's fitted probability;
- the upper bound is the one-sided ``CONFIDENCE`` Clopper-Pearson bound, exact for a binomial
  count, so it covers the true rate at least that often (tests/unit/test_recommendation_risk.py
  draws it); with no seed it is 1: nothing was measured.

Two seeds per trial cannot show a small rate: 4 clean seeds bound it at 53 %, 10 at 26 %, 30 at
9.5 %. ``thin`` says so (fewer than ``MIN_SEEDS``); the answer's text then says the evidence is
thin rather than quote a low risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

__all__ = ["BAND_DECADES", "CONFIDENCE", "MIN_SEEDS", "TARGET", "Risk", "divergence_risk"]

#: Learning rates up to this many decades above the answer count as its evidence.
BAND_DECADES = 0.5
#: The upper bound's confidence.
CONFIDENCE = 0.95
#: Fewer comparable seeds than this is thin evidence.
MIN_SEEDS = 10
#: The estimate a recommendation aims to stay under.
TARGET = 0.05


@dataclass(frozen=True)
class Risk:
    """The chance that a fresh seed diverges at the recommendation.

    Attributes:
      probability: the estimate (see the module docstring).
      upper_bound: its one-sided ``confidence`` upper bound.
      confidence: that bound's confidence.
      n_seeds: the comparable seeds the estimate rests on (0: the model's estimate alone).
      n_diverged: how many of them diverged.
      target: the estimate the choice aims to stay under.
      meets_target: whether ``probability <= target``.
      thin: fewer than ``MIN_SEEDS`` comparable seeds: the bound is wide.
    """

    probability: float
    upper_bound: float
    confidence: float
    n_seeds: int
    n_diverged: int
    target: float
    meets_target: bool
    thin: bool


def clopper_pearson_upper(n: int, d: int, confidence: float = CONFIDENCE) -> float:
    """The exact one-sided upper confidence bound of a binomial rate from ``d`` of ``n``."""
    if n <= 0 or d >= n:
        return 1.0
    return float(beta.ppf(confidence, d + 1, n - d))


def divergence_risk(
    x: np.ndarray,
    n_seeds: np.ndarray,
    n_diverged: np.ndarray,
    answer: np.ndarray,
    *,
    band: float,
    radius: float,
    rising: np.ndarray,
    model_probability: float,
) -> Risk:
    """The risk at unit point ``answer`` from the trials at unit points ``x`` (seeds with a
    known outcome ``n_seeds``, of them ``n_diverged`` diverged). ``band`` is
    ``BAND_DECADES`` in unit learning-rate coordinates; ``rising`` flags the other settings
    whose edge only rises with them (``eps_root``)."""
    u, z = x[:, 0], x[:, 1:]
    tol = 1e-9
    riskier = (u >= answer[0] - tol) & (u <= answer[0] + band + tol)
    if z.shape[1]:
        dz = z - answer[1:]
        within = np.abs(dz) <= radius + tol
        # In a rising setting, any value at or below the answer's is at least as risky.
        below = rising[None, :] & (dz <= tol)
        riskier &= (within | below).all(axis=1)
    n = int(n_seeds[riskier].sum())
    d = int(n_diverged[riskier].sum())
    probability = (d + 0.5) / (n + 1.0) if n else float(model_probability)
    upper = clopper_pearson_upper(n, d)
    probability = min(probability, upper)
    return Risk(
        probability=float(probability),
        upper_bound=float(upper),
        confidence=CONFIDENCE,
        n_seeds=n,
        n_diverged=d,
        target=TARGET,
        meets_target=bool(probability <= TARGET),
        thin=n < MIN_SEEDS,
    )


def band_in_unit(width: float) -> float:
    """``BAND_DECADES`` in the unit coordinate of a learning-rate range ``width`` decades
    wide."""
    return BAND_DECADES / width if width > 0 and math.isfinite(width) else math.inf
