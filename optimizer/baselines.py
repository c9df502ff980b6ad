"""The baselines a job trains beside its ACProp trials: their vocabulary, written once.

A baseline is a reference optimizer a user might run instead of tuning ACProp, named with its
settings: Adam (with a learning rate), AdamW, and the learning-rate-free ``optax.contrib``
optimizers Prodigy, D-Adaptation AdamW and schedule-free AdamW (evaluated at its averaged
parameters). Each setting has optax's default and a bounded range, so a job's request is
validated here (the API's schema is generated from :data:`OPTIMIZERS`) and the worker builds
exactly what the job named (:mod:`optimizer.references`, which imports jax; this module does
not).

A job's baselines default to :data:`DEFAULT_BASELINES` (Adam at 1e-3 and Prodigy); ``()``
means none. The service also trains ACProp at a job's recommendation on the baselines' seeds
when no trial did (the *check*, optimizer name :data:`CHECK_OPTIMIZER`), so that the
comparison is on the same seeds; users cannot name it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "CHECK_OPTIMIZER",
    "DEFAULT_BASELINES",
    "MAX_BASELINES",
    "OPTIMIZERS",
    "Baseline",
    "BaselineError",
    "OptimizerSpec",
    "Setting",
    "short_number",
]

#: At most this many baselines per job (each costs one run of the job's seeds and steps).
MAX_BASELINES = 8
#: The optimizer name of a job's check run: ACProp at the recommendation, on the baselines'
#: seeds (its settings are the six ACProp hyperparameters).
CHECK_OPTIMIZER = "acprop"


class BaselineError(ValueError):
    """A baseline that cannot be trained; the message names the optimizer or setting."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting of a reference optimizer: optax's default and the values allowed,
    ``low`` (allowed if ``low_inclusive``) to ``high`` (allowed); whole numbers if
    ``integer``."""

    default: float
    low: float
    high: float
    low_inclusive: bool = True
    integer: bool = False
    description: str = ""

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        return (
            math.isfinite(value)
            and (value > self.low or (self.low_inclusive and value == self.low))
            and value <= self.high
        )

    def describe(self) -> str:
        """E.g. ``a number in (0, 10]``, ``a whole number in [0, 1000000]``."""
        kind = "a whole number" if self.integer else "a finite number"
        return f"{kind} in {'[' if self.low_inclusive else '('}{self.low:g}, {self.high:g}]"


_LR = "the step size (for the learning-rate-free ones, a factor on the one they estimate)"
_BETA = "a decay of the moments, in [0, 0.9999]"


def _lr(default: float, high: float = 10.0) -> Setting:
    return Setting(default, 0.0, high, low_inclusive=False, description=_LR)


def _beta(default: float) -> Setting:
    return Setting(default, 0.0, 0.9999, description=_BETA)


_EPS = Setting(1e-8, 0.0, 1.0, description="added to the denominator")
_WEIGHT_DECAY = Setting(0.0, 0.0, 10.0, description="decoupled weight decay")


@dataclass(frozen=True, slots=True)
class OptimizerSpec:
    """A reference optimizer: what it is called for people, and its settings."""

    label: str
    settings: Mapping[str, Setting]
    #: Settings always named in its label (Adam's learning rate), besides those not at default.
    labelled: tuple[str, ...] = ()
    description: str = ""


#: The reference optimizers a job may name, with their settings (optax 0.2.8's defaults).
OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        "adam": OptimizerSpec(
            "Adam",
            MappingProxyType(
                {"learning_rate": _lr(1e-3), "b1": _beta(0.9), "b2": _beta(0.999), "eps": _EPS}
            ),
            labelled=("learning_rate",),
            description="optax.adam at a fixed learning rate",
        ),
        "adamw": OptimizerSpec(
            "AdamW",
            MappingProxyType(
                {
                    "learning_rate": _lr(1e-3),
                    "b1": _beta(0.9),
                    "b2": _beta(0.999),
                    "eps": _EPS,
                    "weight_decay": Setting(1e-4, 0.0, 10.0, description="decoupled weight decay"),
                }
            ),
            labelled=("learning_rate",),
            description="optax.adamw at a fixed learning rate",
        ),
        "prodigy": OptimizerSpec(
            "Prodigy",
            MappingProxyType({"learning_rate": _lr(1.0, 100.0), "weight_decay": _WEIGHT_DECAY}),
            description="optax.contrib.prodigy: learning-rate-free",
        ),
        "dadapt_adamw": OptimizerSpec(
            "D-Adaptation AdamW",
            MappingProxyType({"learning_rate": _lr(1.0, 100.0), "weight_decay": _WEIGHT_DECAY}),
            description="optax.contrib.dadapt_adamw: learning-rate-free",
        ),
        "schedule_free_adamw": OptimizerSpec(
            "schedule-free AdamW",
            MappingProxyType(
                {
                    "learning_rate": _lr(0.0025),
                    "b1": _beta(0.9),
                    "warmup_steps": Setting(
                        0, 0, 1_000_000, integer=True, description="linear warm-up steps"
                    ),
                    "weight_decay": _WEIGHT_DECAY,
                }
            ),
            description="optax.contrib.schedule_free_adamw, evaluated at its averaged parameters",
        ),
    }
)


def short_number(value: float) -> str:
    """A number as people write it in a label: ``1e-3``, ``2.5e-4``, ``0.01``, ``1``."""
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


@dataclass(frozen=True)
class Baseline:
    """A reference optimizer and its settings, validated, every default resolved.

    Raises:
        BaselineError: an unknown optimizer or setting, or a value out of its range.
    """

    optimizer: str
    settings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = OPTIMIZERS.get(self.optimizer)
        if spec is None:
            raise BaselineError(
                f"unknown baseline optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"
            )
        unknown = sorted(set(self.settings) - set(spec.settings))
        if unknown:
            raise BaselineError(
                f"{self.optimizer} takes {', '.join(spec.settings)}, not {unknown[0]!r}"
            )
        resolved: dict[str, float] = {}
        for name, setting in spec.settings.items():
            value = self.settings.get(name, setting.default)
            if not setting.contains(value):
                raise BaselineError(
                    f"{self.optimizer} {name} must be {setting.describe()}, got {value!r}"
                )
            resolved[name] = int(value) if setting.integer else float(value)
        object.__setattr__(self, "settings", MappingProxyType(resolved))

    @property
    def label(self) -> str:
        """What people call it: ``Adam 1e-3``, ``Prodigy``, ``AdamW 3e-4 (weight_decay 0.01)``."""
        spec = OPTIMIZERS[self.optimizer]
        head = " ".join([spec.label, *(short_number(self.settings[n]) for n in spec.labelled)])
        changed = [
            f"{name} {short_number(value)}"
            for name, value in self.settings.items()
            if name not in spec.labelled and value != spec.settings[name].default
        ]
        return f"{head} ({', '.join(changed)})" if changed else head

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a job's spec: ``{"optimizer": ..., <setting>: value}``."""
        return {"optimizer": self.optimizer, **dict(self.settings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        settings = {k: v for k, v in data.items() if k != "optimizer"}
        return cls(str(data.get("optimizer")), settings)


#: A job's baselines when its request names none: Adam at the usual 1e-3, and Prodigy.
DEFAULT_BASELINES: tuple[Baseline, ...] = (
    Baseline("adam", {"learning_rate": 1e-3}),
    Baseline("prodigy"),
)
