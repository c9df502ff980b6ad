"""Which trials the loss model is fitted on when a job has many.

The loss model is a Gaussian process: its fit costs ``O(n^3)`` per likelihood evaluation in
the ``n`` trials it sees (7.6 s at 1,000 trials, minutes at 5,000). Up to
``FULL_FIT_MAX_TRIALS`` usable trials it sees every one of them, exactly as before. Above that
it is fitted on a bounded subset that keeps what decides the answer:

- **near the optimum**: the ``N_NEAR`` trials closest (in the unit box) to the ``N_ANCHORS``
  trials with the lowest mean seed loss: the region the choice lands in, sampled without
  selecting on the seeds' noise (only the anchors are picked by their losses);
- **near the divergence edge**: in each stratum of the other tuned settings (``eps_root``,
  ...), the ``N_EDGE`` trials with the highest learning rates that trained without
  divergence: where the safe limit cuts the loss curve, the loss there matters;
- **the rest, stratified**: the unit box cut into about ``N_STRATA`` cells, from each the
  trial closest to the cell's centre, so the trend and the length scales still see the
  whole explored range;
- every trial flagged ``always`` (the confirmation stage's trials).

The divergence model, its evidence and the risk still use every trial (their cost is
linear). The selection reads only the trials' content (points and losses, in the
content-sorted order the choice works in, ties to the lower index), so it is deterministic
and does not depend on the order the trials came in.
"""

from __future__ import annotations

import numpy as np

from optimizer.recommendation._loss_model import LossModel

__all__ = ["FULL_FIT_MAX_TRIALS", "fit_loss_model", "loss_fit_subset"]

#: Up to this many usable trials the loss model is fitted on all of them (the answer is what
#: it always was); above it, on the subset this module selects.
FULL_FIT_MAX_TRIALS = 400
N_ANCHORS = 16
N_NEAR = 96
EDGE_STRATA = 32
N_EDGE = 2
N_STRATA = 100


def _cells(x: np.ndarray, per_dim: int) -> np.ndarray:
    """The cell number of each point of the unit box cut into ``per_dim`` cells a side."""
    k = np.clip(np.floor(x * per_dim).astype(int), 0, per_dim - 1)
    return np.ravel_multi_index(tuple(k.T), (per_dim,) * x.shape[1]) if x.shape[1] else k[:, 0]


def _first_per_cell(cells: np.ndarray, key: np.ndarray, count: int = 1) -> np.ndarray:
    """Per cell, the ``count`` points with the smallest ``key`` (ties to the lower index)."""
    order = np.lexsort((np.arange(cells.size), key, cells))
    sorted_cells = cells[order]
    start = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(cells.size) - start
    return order[rank < count]


def _per_dim(total: int, dims: int) -> int:
    return max(2, round(total ** (1.0 / dims))) if dims else 1


def loss_fit_subset(
    x: np.ndarray,
    mean_loss: np.ndarray,
    always: np.ndarray,
    *,
    max_full: int = FULL_FIT_MAX_TRIALS,
) -> np.ndarray:
    """Indices (ascending) of the usable trials the loss model is fitted on.

    Args:
      x: unit-box points of the usable trials, shape ``(n, d)``, learning rate first, in
        the content-sorted order.
      mean_loss: each trial's mean seed loss.
      always: per trial, whether it is always fitted on (confirmation trials).
      max_full: up to this many trials, all of them (``arange(n)``).

    Returns:
      The indices, ascending.
    """
    n, d = x.shape
    if n <= max_full:
        return np.arange(n)
    chosen = np.zeros(n, dtype=bool)
    chosen |= always
    # Near the optimum: the trials closest to the best few (only those are chosen by loss).
    anchors = np.argsort(mean_loss, kind="stable")[:N_ANCHORS]
    dist = np.min(np.linalg.norm(x[:, None, :] - x[None, anchors, :], axis=-1), axis=1)
    chosen[np.argsort(dist, kind="stable")[:N_NEAR]] = True
    # Near the edge: per stratum of the other settings, the highest safe learning rates.
    z_cells = _cells(x[:, 1:], _per_dim(EDGE_STRATA, d - 1))
    chosen[_first_per_cell(z_cells, -x[:, 0], N_EDGE)] = True
    # The rest: from each cell of the box, the trial closest to its centre.
    per_dim = _per_dim(N_STRATA, d)
    cells = _cells(x, per_dim)
    centre = (np.clip(np.floor(x * per_dim), 0, per_dim - 1) + 0.5) / per_dim
    chosen[_first_per_cell(cells, np.linalg.norm(x - centre, axis=1))] = True
    return np.flatnonzero(chosen)


def fit_loss_model(
    x: np.ndarray,
    seed_losses: list[np.ndarray],
    mean_loss: np.ndarray,
    always: np.ndarray,
    max_full: int = FULL_FIT_MAX_TRIALS,
) -> tuple[LossModel, int]:
    """The loss model of the usable trials (arguments as in :func:`loss_fit_subset`;
    ``seed_losses`` their finite seed losses), fitted on every trial up to ``max_full`` and
    on the subset above; and the number of trials it was fitted on."""
    fitted = loss_fit_subset(x, mean_loss, always, max_full=max_full)
    if fitted.size == x.shape[0]:
        return LossModel.fit(x, seed_losses), int(fitted.size)
    subset = [seed_losses[i] for i in fitted]
    return LossModel.fit(x[fitted], subset, pooled=seed_losses), int(fitted.size)
