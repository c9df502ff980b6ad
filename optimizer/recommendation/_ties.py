"""The choice's two tie rules, applied after the fit has chosen: ``eps_root`` 1e-8 (the
paper's, and the warm start's first level) against a choice far from it, and the paper's whole
setting (learning rate 1e-3 at ``eps_root`` 1e-8) against a choice the model cannot tell from
it. Their evidence: docs/recommendation.md, "Choice"."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from optimizer.acprop import OPTAX_DEFAULTS, PAPER_EPS_ROOT, PAPER_SETTING
from optimizer.recommendation._features import FeatureSpace
from optimizer.recommendation._loss_model import LossModel
from optimizer.recommendation._records import TrialOutcome

__all__ = ["EPS_ROOT_TOLERANCE", "FAR_EPS_ROOT_DECADES", "at_default_eps_root", "paper_point"]

#: Relative loss tolerance within which ``eps_root`` 1e-8 (the paper's, and the warm start's
#: first level) wins against a choice at least ``FAR_EPS_ROOT_DECADES`` away from it. 5 %
#: rather than the 2 % of ``tolerance``: over sampler seeds 10-22 of char-lm, the chosen
#: ``eps_root`` of 5e-7 or 7e-10 looked a few percent better on the job's 2 seeds and lost up
#: to 5 % on fresh ones (mean regret +1.34 -> +0.33 %, worst +5.2 -> +1.1); see
#: docs/recommendation.md, "Choice".
EPS_ROOT_TOLERANCE = 0.05
#: A chosen ``eps_root`` within this many decades of 1e-8 is kept as it is (Rosenbrock's best
#: runs sit at 2-3e-8 and lose 15-30 points at 1e-8).
FAR_EPS_ROOT_DECADES = 0.5


def paper_point(
    trials: list[TrialOutcome],
    states: list[tuple[list[float], int, int]],
    usable: list[int],
    space: FeatureSpace,
) -> np.ndarray | None:
    """The unit point of a usable trial at the paper's setting (the best one if several);
    matched to 1e-9 relative, as a sweep's grid may compute 1e-3 as 0.001000000000000002."""

    def at_paper(params: dict[str, float]) -> bool:
        full = {**OPTAX_DEFAULTS, **params}
        return all(math.isclose(full[k], v, rel_tol=1e-9) for k, v in PAPER_SETTING.items())

    found = [i for i in usable if at_paper(dict(trials[i].params))]
    if not found:
        return None
    best = min(found, key=lambda i: float(np.mean(states[i][0])))
    return space.to_unit([trials[best].params])[0]


def at_default_eps_root(
    x_best: np.ndarray,
    space: FeatureSpace,
    loss: LossModel,
    limit: Callable[[np.ndarray], np.ndarray],
    learning_rates: np.ndarray,
    explored: tuple[np.ndarray, np.ndarray],
    score: Callable[[LossModel, np.ndarray], np.ndarray],
) -> np.ndarray | None:
    """The best safe point (by the choice's pessimistic score) on the learning-rate line at
    ``x_best``'s settings with ``eps_root`` 1e-8, where ``x_best`` lies at least
    ``FAR_EPS_ROOT_DECADES`` from 1e-8 and 1e-8 is inside the box the non-diverged trials
    explored (``explored``: its unit lower and upper corners); else None."""
    if "eps_root" not in space.tuned:
        return None
    j = space.tuned.index("eps_root")
    params = space.to_params(x_best)
    if abs(math.log10(params["eps_root"] / PAPER_EPS_ROOT)) < FAR_EPS_ROOT_DECADES:
        return None
    z = space.to_unit([{**params, "eps_root": PAPER_EPS_ROOT}])[0, 1:]
    if not explored[0][j] - 1e-12 <= z[j - 1] <= explored[1][j] + 1e-12:
        return None
    safe = learning_rates[learning_rates <= float(limit(z[None])[0]) + 1e-12]
    if not safe.size:
        return None
    line = np.column_stack([safe, np.tile(z, (safe.size, 1))])
    return line[int(np.argmin(score(loss, line)))]
