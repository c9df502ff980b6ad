"""The search space of a tuning job over ACProp's hyperparameters, and its Optuna form.

Each of ``learning_rate, b1, b2, eps, eps_root, weight_decay`` is either fixed
(:class:`Fixed`) or searched over a range (:class:`Range`, optionally on a log scale). The
rules are ACProp's: learning rates > 0; 0 <= beta < 1; eps, eps_root and weight decay >= 0;
a log range strictly above 0; ``low < high``; every number finite. A violation raises
:class:`SpaceError` naming the hyperparameter.

:data:`DEFAULT_SPACE` searches the learning rate on [1e-5, 1] and ``eps_root`` on
[1e-16, 1e-6] (both log): optax's default ``eps_root=1e-16`` blows up early on ordinary
networks (optax issue 1132), so the tuner must be able to move it. The rest are optax's
defaults, fixed.

Jax-free: imports only the standard library (and Optuna lazily, in
:meth:`SearchSpace.distributions`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimizer.acprop import BOUNDS, HYPERPARAMETERS, OPTAX_DEFAULTS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "DEFAULT_SPACE",
    "Fixed",
    "Range",
    "SearchSpace",
    "SpaceError",
    "validate_entry",
]


class SpaceError(ValueError):
    """An invalid search-space entry; ``.field`` names the hyperparameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_value(name: str, value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpaceError(name, f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise SpaceError(name, f"{what} must be finite, got {value}")
    if not BOUNDS[name].contains(value):
        raise SpaceError(name, f"{what} must be {BOUNDS[name].describe()}, got {value:g}")
    return value


@dataclass(frozen=True, slots=True)
class Fixed:
    """A hyperparameter held at one value."""

    value: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


@dataclass(frozen=True, slots=True)
class Range:
    """A hyperparameter searched on ``[low, high]``, uniformly or on a log scale."""

    low: float
    high: float
    log: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


Entry = Fixed | Range


def validate_entry(name: str, entry: Entry) -> Entry:
    """Check one entry against ACProp's rules for ``name``; raises :class:`SpaceError`."""
    if name not in BOUNDS:
        raise SpaceError(name, f"unknown hyperparameter (known: {', '.join(HYPERPARAMETERS)})")
    if isinstance(entry, Fixed):
        return Fixed(_check_value(name, entry.value, "value"))
    low = _check_value(name, entry.low, "low")
    high = _check_value(name, entry.high, "high")
    if not low < high:
        raise SpaceError(name, f"low must be < high, got low={low:g}, high={high:g}")
    if entry.log and low <= 0.0:
        raise SpaceError(name, f"a log range must have low > 0, got low={low:g}")
    return Range(low, high, bool(entry.log))


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """One entry per ACProp hyperparameter, validated on construction."""

    learning_rate: Entry = field(default_factory=lambda: Range(1e-5, 1.0, log=True))
    b1: Entry = field(default_factory=lambda: Fixed(OPTAX_DEFAULTS["b1"]))
    b2: Entry = field(default_factory=lambda: Fixed(OPTAX_DEFAULTS["b2"]))
    eps: Entry = field(default_factory=lambda: Fixed(OPTAX_DEFAULTS["eps"]))
    eps_root: Entry = field(
        default_factory=lambda: Range(OPTAX_DEFAULTS["eps_root"], 1e-6, log=True)
    )
    weight_decay: Entry = field(default_factory=lambda: Fixed(OPTAX_DEFAULTS["weight_decay"]))

    def __post_init__(self) -> None:
        for name in HYPERPARAMETERS:
            object.__setattr__(self, name, validate_entry(name, getattr(self, name)))

    def entries(self) -> dict[str, Entry]:
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    @property
    def searched(self) -> tuple[str, ...]:
        return tuple(n for n, e in self.entries().items() if isinstance(e, Range))

    @property
    def fixed(self) -> dict[str, float]:
        return {n: e.value for n, e in self.entries().items() if isinstance(e, Fixed)}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The JSON form stored in a job's spec: ``{"value": x}`` or ``{"low", "high", "log"}``."""
        return {name: entry.to_dict() for name, entry in self.entries().items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
        """The inverse of :meth:`to_dict`; hyperparameters left out keep the default entry."""
        unknown = sorted(set(data) - set(HYPERPARAMETERS))
        if unknown:
            raise SpaceError(unknown[0], f"unknown hyperparameter (known: {HYPERPARAMETERS})")
        entries: dict[str, Entry] = {}
        for name, raw in data.items():
            if "value" in raw:
                if set(raw) != {"value"}:
                    raise SpaceError(name, "give either 'value' or 'low'/'high'/'log', not both")
                entries[name] = Fixed(raw["value"])
            elif "low" in raw and "high" in raw and set(raw) <= {"low", "high", "log"}:
                entries[name] = Range(raw["low"], raw["high"], bool(raw.get("log", False)))
            else:
                raise SpaceError(
                    name, "expected {'value': x} or {'low': a, 'high': b, 'log': bool}"
                )
        return cls(**entries)  # type: ignore[arg-type]

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of the searched hyperparameters (fixed ones are left out)."""
        from optuna.distributions import FloatDistribution

        return {
            name: FloatDistribution(entry.low, entry.high, log=entry.log)
            for name, entry in self.entries().items()
            if isinstance(entry, Range)
        }

    def config(self, sampled: Mapping[str, float]) -> dict[str, float]:
        """A full configuration: the sampled values over the fixed ones, as plain floats."""
        config = self.fixed
        config.update({name: float(sampled[name]) for name in self.searched})
        return {name: config[name] for name in HYPERPARAMETERS}


DEFAULT_SPACE = SearchSpace()
