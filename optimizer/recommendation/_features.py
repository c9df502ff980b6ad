"""The coordinates the recommendation models work in.

ACProp's settings act multiplicatively, so every model here sees them on a log scale:

* ``learning_rate``, ``eps``, ``eps_root`` -> ``log10(value)``;
* ``b1``, ``b2`` -> ``log10(1 - value)`` (the averaging horizon, ``1 / (1 - b)``, is what
  matters: 0.99 and 0.999 are as far apart as 0.9 and 0.99);
* ``weight_decay`` -> ``log10(value)`` when every trial has a positive value, else linear.

A setting is *tuned* when the trials of a job do not all share one value; the others are
*fixed* and pass through to the recommendation unchanged. Tuned coordinates are mapped onto
``[0, 1]`` by the range the trials covered, so that one kernel length scale or one
comparability radius means the same fraction of the explored range in every direction.
Pure numpy: importing this module never imports jax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.acprop import HYPERPARAMETERS, OPTAX_DEFAULTS


def _encode(name: str, values: np.ndarray, *, log_weight_decay: bool) -> np.ndarray:
    if name in ("b1", "b2"):
        return np.log10(1.0 - values)
    if name == "weight_decay" and not log_weight_decay:
        return values
    return np.log10(values)


def _decode(name: str, coords: np.ndarray, *, log_weight_decay: bool) -> np.ndarray:
    if name in ("b1", "b2"):
        return 1.0 - 10.0**coords
    if name == "weight_decay" and not log_weight_decay:
        return coords
    return 10.0**coords


@dataclass(frozen=True)
class FeatureSpace:
    """The unit box spanned by a job's trials.

    Attributes:
      tuned: names of the tuned settings; ``tuned[0]`` is always ``learning_rate``.
      fixed: the value of every setting shared by all trials.
      lo: lower end of each tuned coordinate (encoded), aligned with ``tuned``.
      hi: upper end of each tuned coordinate (encoded).
      log_weight_decay: whether ``weight_decay`` is encoded on a log scale.
    """

    tuned: tuple[str, ...]
    fixed: Mapping[str, float]
    lo: np.ndarray
    hi: np.ndarray
    log_weight_decay: bool

    @classmethod
    def from_params(cls, params: Sequence[Mapping[str, float]]) -> FeatureSpace:
        """Finds the tuned settings and their ranges from every trial's parameters."""
        full = [{**OPTAX_DEFAULTS, **p} for p in params]
        log_wd = all(p["weight_decay"] > 0.0 for p in full)
        tuned: list[str] = []
        fixed: dict[str, float] = {}
        for name in HYPERPARAMETERS:
            distinct = {p[name] for p in full}
            if name == "learning_rate" or len(distinct) > 1:
                tuned.append(name)
            else:
                fixed[name] = float(next(iter(distinct)))
        raw = np.array([[p[n] for n in tuned] for p in full], dtype=float)
        enc = np.column_stack(
            [_encode(n, raw[:, k], log_weight_decay=log_wd) for k, n in enumerate(tuned)]
        )
        lo, hi = enc.min(axis=0), enc.max(axis=0)
        return cls(tuple(tuned), fixed, lo, hi, log_wd)

    @property
    def width(self) -> np.ndarray:
        """Width of each encoded coordinate; a single-valued learning rate gets width 1."""
        w = self.hi - self.lo
        return np.where(w > 0.0, w, 1.0)

    def to_unit(self, params: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Maps parameter dicts to points of the unit box, shape ``(n, len(tuned))``."""
        full = [{**OPTAX_DEFAULTS, **p} for p in params]
        raw = np.array([[p[n] for n in self.tuned] for p in full], dtype=float).reshape(
            len(full), len(self.tuned)
        )
        enc = np.column_stack(
            [
                _encode(n, raw[:, k], log_weight_decay=self.log_weight_decay)
                for k, n in enumerate(self.tuned)
            ]
        )
        return (enc - self.lo) / self.width

    def to_params(self, unit_point: np.ndarray) -> dict[str, float]:
        """Maps one point of the unit box back to a complete ACProp setting."""
        enc = self.lo + np.asarray(unit_point, dtype=float) * self.width
        out = dict(self.fixed)
        for k, name in enumerate(self.tuned):
            value = _decode(name, enc[k : k + 1], log_weight_decay=self.log_weight_decay)[0]
            out[name] = float(value)
        return {name: out[name] for name in HYPERPARAMETERS}

    def lr_to_unit(self, learning_rate: float) -> float:
        """The unit coordinate of a learning rate."""
        return (math.log10(learning_rate) - float(self.lo[0])) / float(self.width[0])

    def unit_to_lr(self, u: float) -> float:
        """The learning rate at a unit coordinate."""
        return float(10.0 ** (float(self.lo[0]) + u * float(self.width[0])))
