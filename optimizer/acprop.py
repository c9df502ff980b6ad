"""ACProp's vocabulary, in one place: the six hyperparameter names, optax's defaults, the
allowed range of each, and the paper's setting. Every other module imports these; nothing
writes them again.

``optax.contrib.acprop(learning_rate, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16,
weight_decay=0.0)``: the names are in its argument order (also the order of the vectors the
population trainer builds). The paper (Zhuang et al., NeurIPS 2021) trains with learning rate
1e-3 and ``eps`` 1e-8 inside the square root, which is optax's ``eps_root``; optax's own
default ``eps_root=1e-16`` blows up in the first steps of ordinary networks (optax issue
1132), which is why the tuner searches it. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BOUNDS",
    "HYPERPARAMETERS",
    "OPTAX_DEFAULTS",
    "PAPER_EPS_ROOT",
    "PAPER_LEARNING_RATE",
    "PAPER_SETTING",
    "Bound",
]

#: The hyperparameters, in ``optax.contrib.acprop``'s argument order.
HYPERPARAMETERS: tuple[str, ...] = ("learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay")

#: optax's defaults for every hyperparameter but the learning rate (which has none).
OPTAX_DEFAULTS: Mapping[str, float] = MappingProxyType(
    {"b1": 0.9, "b2": 0.999, "eps": 1e-16, "eps_root": 1e-16, "weight_decay": 0.0}
)

#: The paper's setting (its CIFAR runs): learning rate 1e-3, eps 1e-8 inside the root.
PAPER_LEARNING_RATE = 1e-3
PAPER_EPS_ROOT = 1e-8
PAPER_SETTING: Mapping[str, float] = MappingProxyType(
    {"learning_rate": PAPER_LEARNING_RATE, "eps_root": PAPER_EPS_ROOT}
)


@dataclass(frozen=True, slots=True)
class Bound:
    """The values a hyperparameter may take: ``low`` (itself allowed if ``low_inclusive``)
    up to ``high`` (exclusive; None for no upper bound); always finite."""

    low: float
    low_inclusive: bool
    high: float | None

    def contains(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (value > self.low or (self.low_inclusive and value == self.low))
            and (self.high is None or value < self.high)
        )

    def describe(self) -> str:
        """E.g. ``in [0, 1)``, ``> 0``, ``>= 0``."""
        if self.high is not None:
            return f"in [{self.low:g}, {self.high:g})"
        return f">= {self.low:g}" if self.low_inclusive else f"> {self.low:g}"


#: ACProp's rules: a learning rate > 0, betas in [0, 1), eps, eps_root and weight decay >= 0.
BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "learning_rate": Bound(0.0, False, None),
        "b1": Bound(0.0, True, 1.0),
        "b2": Bound(0.0, True, 1.0),
        "eps": Bound(0.0, True, None),
        "eps_root": Bound(0.0, True, None),
        "weight_decay": Bound(0.0, True, None),
    }
)
