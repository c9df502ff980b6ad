"""`ACPropConfig`: one ACProp configuration, validated, and its translations.

A configuration is the unit a tuning trial evaluates. It is a frozen dataclass of plain Python
floats with optax's defaults (``optax.contrib.acprop``), validated on construction so that no
NaN, infinity or out-of-range value reaches a study, a worker or a compiled program. It
translates to:

- an optax transformation with the hyperparameters injected as state arrays
  (:meth:`ACPropConfig.transformation`), so one compiled program serves every configuration;
- a JSON-ready dict and back (:meth:`to_dict` / :meth:`from_dict`);
- a ready line of Python for the user (:meth:`optax_line`).

Importing this module does not import JAX or optax; :meth:`transformation` imports them.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optimizer.acprop import BOUNDS, HYPERPARAMETERS, OPTAX_DEFAULTS

__all__ = ["ACPropConfig", "ConfigError"]


class ConfigError(ValueError):
    """An ACProp hyperparameter is invalid; the message names the field and its allowed range."""


@dataclass(frozen=True)
class ACPropConfig:
    """ACProp hyperparameters with optax's defaults.

    Note that optax's default ``eps_root=1e-16`` blows up in the first steps of many problems
    (optax issue 1132); the tuner searches ``eps_root`` for that reason, but this class keeps
    optax's defaults so that ``ACPropConfig(lr)`` means exactly ``optax.contrib.acprop(lr)``.

    Attributes:
        learning_rate: step size, > 0.
        b1: decay of the first moment, in [0, 1).
        b2: decay of the centred second moment, in [0, 1).
        eps: added to the denominator outside the square root, >= 0.
        eps_root: added to the second moment inside the square root, >= 0.
        weight_decay: decoupled weight decay (multiplied by the learning rate), >= 0.
    """

    learning_rate: float
    b1: float = OPTAX_DEFAULTS["b1"]
    b2: float = OPTAX_DEFAULTS["b2"]
    eps: float = OPTAX_DEFAULTS["eps"]
    eps_root: float = OPTAX_DEFAULTS["eps_root"]
    weight_decay: float = OPTAX_DEFAULTS["weight_decay"]

    def __post_init__(self) -> None:
        for name in HYPERPARAMETERS:
            value = getattr(self, name)
            allowed = f"a finite number {BOUNDS[name].describe()}"
            # numbers.Real admits numpy scalars; bool is an int subclass, and a JSON `true` is
            # not a learning rate.
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be {allowed}, got {value!r}")
            value = float(value)
            if not BOUNDS[name].contains(value):
                raise ConfigError(f"{name} must be {allowed}, got {value!r}")
            # Normalise ints and numpy floats to Python floats (Optuna and JSON want those).
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, float]:
        """The hyperparameters as a JSON-ready dict of Python floats."""
        return {name: float(getattr(self, name)) for name in HYPERPARAMETERS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ACPropConfig:
        """Build a config from a dict; missing fields take optax's defaults.

        Raises:
            ConfigError: for an unknown field, a missing learning rate, or an invalid value.
        """
        unknown = sorted(set(data) - set(HYPERPARAMETERS))
        if unknown:
            raise ConfigError(
                f"unknown ACProp field {unknown[0]!r}; fields: {', '.join(HYPERPARAMETERS)}"
            )
        if "learning_rate" not in data:
            raise ConfigError("learning_rate is required: a finite number > 0")
        return cls(**dict(data))

    def replace(self, **changes: float) -> ACPropConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def transformation(self) -> Any:
        """``optax.inject_hyperparams(optax.contrib.acprop)(...)`` with these values.

        The hyperparameters live in the optimizer state as arrays, so a program compiled for one
        configuration runs any other by changing the state, not the program.
        """
        import optax  # lazy: keeps this module importable without JAX

        return optax.inject_hyperparams(optax.contrib.acprop)(**self.to_dict())

    def optax_line(self) -> str:
        """A ready line of Python that builds this optimizer, e.g. for a recommendation."""
        args = ", ".join(f"{name}={_short(getattr(self, name))}" for name in HYPERPARAMETERS)
        return f"optax.contrib.acprop({args})"


def _short(value: float) -> str:
    # repr gives the shortest string that round-trips, so the line reproduces the config
    # exactly; 1e-16 stays 1e-16 and 0.003 stays 0.003.
    return repr(float(value))
