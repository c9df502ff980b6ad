"""TPE's Parzen-estimator densities in closed form (used by tpe_speedups.fast_acquisition).

For the continuous parameters this project searches, the truncated-normal masses of a mixture
depend only on its components, so they are computed once per component and the per-candidate
part is one squared distance. Reads Optuna's own estimator's internals (private); where they
are missing or of another kind, :func:`mixture_log_pdf` returns None and Optuna's code runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr

__all__ = ["CONTINUOUS", "log_gauss_mass", "mixture_log_pdf"]

_LOG_NORM_C = 0.5 * math.log(2 * math.pi)  # log of the normal density's constant

try:  # Optuna's private TPE internals; without them nothing here applies.
    from optuna.samplers._tpe.probability_distributions import (
        _BatchedTruncLogNormDistributions,
        _BatchedTruncNormDistributions,
    )

    #: The component distributions handled in closed form (empty on another Optuna).
    CONTINUOUS: tuple[type, ...] = (
        _BatchedTruncNormDistributions,
        _BatchedTruncLogNormDistributions,
    )
except ImportError:  # pragma: no cover - another Optuna version
    CONTINUOUS = ()


def mixture_log_pdf(estimator: Any, samples: dict[str, np.ndarray]) -> np.ndarray | None:
    """log p(x) of a Parzen estimator at the samples, or None where it has a parameter this
    does not handle (categorical or stepped: Optuna's own `log_pdf` then runs).

    Each component is a product of truncated normals over [low, high] (in log space for log
    parameters): log p_k(x) = -|z|^2 / 2 - sum_d (log sigma_kd + log mass_kd + log C), with
    z = (x - mu_k) / sigma_k; the mixture is a log-sum-exp over components with their weights.
    A sample outside the bounds has density 0 (log -inf), as in Optuna.
    """
    mixture: Any = getattr(estimator, "_mixture_distribution", None)
    dists = getattr(mixture, "distributions", None)
    if not dists or not all(type(d) in CONTINUOUS for d in dists):
        return None
    x = np.asarray(estimator._transform(samples), dtype=np.float64)  # (n, d)
    is_log = np.array([d.is_log for d in dists])
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(is_log, np.log(np.where(is_log, x, 1.0)), x)
    mu = np.stack([np.asarray(d.mu, dtype=np.float64) for d in dists], axis=1)  # (k, d)
    sigma = np.stack([np.asarray(d.sigma, dtype=np.float64) for d in dists], axis=1)
    low = np.array([d.adapted_low for d in dists], dtype=np.float64)
    high = np.array([d.adapted_high for d in dists], dtype=np.float64)
    # Centred on each range's midpoint first: for a narrow range far from 0 (b2 in
    # [0.99999, 0.999999]) the expanded square below would otherwise cancel most digits.
    centre = 0.5 * (low + high)
    xc, mu_c = x - centre, mu - centre
    inv_var = sigma**-2
    log_mass = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)  # (k, d)
    with np.errstate(divide="ignore"):
        log_weights = np.log(np.asarray(mixture.weights, dtype=np.float64))
    const = log_weights - (np.log(sigma) + log_mass).sum(axis=1) - len(dists) * _LOG_NORM_C
    # |z|^2 = sum_d (x_d - mu_kd)^2 / sigma_kd^2, expanded into three matrix products: one
    # pass over (candidates x components) instead of several over (... x parameters).
    sq = (
        (xc * xc) @ inv_var.T
        - 2.0 * xc @ (mu_c * inv_var).T
        + (mu_c * mu_c * inv_var).sum(axis=1)[None, :]
    )
    log_p = const[None, :] - 0.5 * np.maximum(sq, 0.0)
    inside = ((x >= low) & (x <= high)).all(axis=1)
    log_p[~inside] = -np.inf
    top = log_p.max(axis=1)
    top[np.isneginf(top)] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_p - top[:, None]).sum(axis=1)) + top


def log_gauss_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, elementwise, accurate in both tails: computed in the
    left tail (flipping the sign where the interval lies right of 0), and as
    log1p(-Phi(a) - Phi(-b)) where it straddles 0."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    right = a > 0
    lo = np.where(right, -b, a)  # the interval mirrored into the left tail where needed
    hi = np.where(right, -a, b)
    out = np.empty_like(lo)
    tail = hi <= 0
    if tail.any():
        log_hi, log_lo = log_ndtr(hi[tail]), log_ndtr(lo[tail])
        with np.errstate(divide="ignore"):
            out[tail] = log_hi + np.log1p(-np.exp(log_lo - log_hi))
    central = ~tail
    if central.any():
        out[central] = np.log1p(-ndtr(lo[central]) - ndtr(-hi[central]))
    return out
