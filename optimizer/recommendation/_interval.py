"""The recommendation's ``lr_interval``: the learning rates the evidence cannot tell from the
answer's."""

from __future__ import annotations

import numpy as np

from optimizer.recommendation._features import FeatureSpace
from optimizer.recommendation._loss_model import LossModel

__all__ = ["lr_interval"]


def lr_interval(
    loss: LossModel,
    space: FeatureSpace,
    z_final: np.ndarray,
    x_final: np.ndarray,
    line: tuple[float, float],
    lr: float,
    tolerance: float,
) -> tuple[tuple[float, float], float]:
    """The contiguous run of the fine learning-rate line (unit coordinates ``line``: from the
    lowest explored to the safe limit) at the answer's other settings ``z_final`` whose
    predicted loss the evidence cannot tell from the best (within ``tolerance``, or two of
    the model's standard deviations), widened to hold the answer ``lr``; and the predicted
    loss at the answer ``x_final`` (unit point, shape ``(1, d)``)."""
    lo, top = line
    line_u = np.linspace(lo, max(lo, top), 401)
    points = np.column_stack([line_u, np.tile(z_final, (line_u.size, 1))])
    pred = loss.predict_loss(points)
    at_rec = float(loss.predict_loss(x_final)[0])
    best = min(at_rec, float(pred.min()))
    within = pred <= best + np.maximum(tolerance * abs(best), 2.0 * loss.model_std(points))
    i = int(np.argmin(np.abs(line_u - x_final[0, 0])))
    a = b = i
    while a > 0 and within[a - 1]:
        a -= 1
    while b < line_u.size - 1 and within[b + 1]:
        b += 1
    interval = (min(space.unit_to_lr(line_u[a]), lr), max(space.unit_to_lr(line_u[b]), lr))
    return interval, at_rec
