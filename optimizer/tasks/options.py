"""Option schemas for tasks: typed, bounded, jax-free.

A task's options arrive as JSON from the REST API (``{"widths": [64, 128], "batch_size": 128}``),
so they are validated here, in the API process, without importing JAX. Every option has a
type, bounds and a default; a schema rejects unknown names, wrong types, non-finite floats and
values out of range, and fills in the defaults. Each error names the option and its allowed
range, so the user can fix the request without reading code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVATION",
    "ChoiceOption",
    "DatasetOption",
    "FloatOption",
    "IntListOption",
    "IntOption",
    "Option",
    "OptionSchema",
    "TaskOptionsError",
]


class TaskOptionsError(ValueError):
    """A task name or a task option is invalid; the message names it and the allowed values."""


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, and JSON `true` must not pass as a width.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class IntOption:
    """An integer in ``[low, high]``."""

    default: int
    low: int
    high: int
    help: str = ""

    def allowed(self) -> str:
        return f"an integer in [{self.low}, {self.high}]"

    def validate(self, name: str, value: Any) -> int:
        if not _is_int(value) or not self.low <= value <= self.high:
            raise TaskOptionsError(f"option {name!r} must be {self.allowed()}, got {value!r}")
        return int(value)


@dataclass(frozen=True)
class FloatOption:
    """A finite float in ``[low, high]`` (integers are accepted and converted)."""

    default: float
    low: float
    high: float
    help: str = ""

    def allowed(self) -> str:
        return f"a finite number in [{self.low:g}, {self.high:g}]"

    def validate(self, name: str, value: Any) -> float:
        ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
        if not ok or not self.low <= value <= self.high:
            raise TaskOptionsError(f"option {name!r} must be {self.allowed()}, got {value!r}")
        return float(value)


@dataclass(frozen=True)
class IntListOption:
    """A list of ``min_len .. max_len`` integers, each in ``[low, high]`` (e.g. layer widths)."""

    default: tuple[int, ...]
    low: int
    high: int
    min_len: int
    max_len: int
    help: str = ""

    def allowed(self) -> str:
        return (
            f"a list of {self.min_len} to {self.max_len} integers, "
            f"each in [{self.low}, {self.high}]"
        )

    def validate(self, name: str, value: Any) -> list[int]:
        ok = (
            isinstance(value, list | tuple)
            and self.min_len <= len(value) <= self.max_len
            and all(_is_int(v) and self.low <= v <= self.high for v in value)
        )
        if not ok:
            raise TaskOptionsError(f"option {name!r} must be {self.allowed()}, got {value!r}")
        return [int(v) for v in value]


@dataclass(frozen=True)
class ChoiceOption:
    """One string out of a fixed set."""

    default: str
    choices: tuple[str, ...]
    help: str = ""

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def validate(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise TaskOptionsError(f"option {name!r} must be {self.allowed()}, got {value!r}")
        return value


@dataclass(frozen=True)
class DatasetOption:
    """An uploaded data set, named by its SHA-256 (lowercase hex; see optimizer/datasets).

    ``required``: the task needs one (a model family); otherwise it is left out of the
    options unless given (a task with built-in data that can take a user's instead)."""

    required: bool = True
    help: str = "the sha256 of a data set uploaded with POST /api/v1/datasets"

    @property
    def default(self) -> None:
        return None

    def allowed(self) -> str:
        return "the sha256 of a data set you uploaded (64 lowercase hex digits)"

    def validate(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not _SHA256.match(value):
            shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
            raise TaskOptionsError(f"option {name!r} must be {self.allowed()}, got {shown!r}")
        return value


_SHA256 = re.compile("^[0-9a-f]{64}$")

#: The hidden activation of the MLPs (the names of optimizer.tasks.builtin._common.ACTIVATIONS).
ACTIVATION = ChoiceOption("relu", ("relu", "tanh", "gelu"), "hidden activation")

Option = IntOption | FloatOption | IntListOption | ChoiceOption | DatasetOption


@dataclass(frozen=True)
class OptionSchema:
    """The options of one task: their specs, plus an optional check across options.

    ``check`` receives the complete, individually valid options and raises
    :class:`TaskOptionsError` for combinations that cannot work (e.g. heads not dividing the
    model width).
    """

    options: Mapping[str, Option]
    check: Callable[[dict[str, Any]], None] | None = None
    help: str = ""

    def defaults(self) -> dict[str, Any]:
        """Every option's default; a data set (which has none) is left out."""
        return {
            name: _default(spec)
            for name, spec in self.options.items()
            if not isinstance(spec, DatasetOption)
        }

    def validate(self, task: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return ``options`` with every default filled in, or raise TaskOptionsError."""
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise TaskOptionsError(
                f"options of task {task!r} must be an object, got {type(options).__name__}"
            )
        unknown = sorted(str(k) for k in options if k not in self.options)
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise TaskOptionsError(
                f"task {task!r} has no option {unknown[0]!r}; allowed options: {allowed}"
            )
        result = self.defaults()
        for name, value in options.items():
            result[name] = self.options[name].validate(name, value)
        for name, spec in self.options.items():
            if isinstance(spec, DatasetOption) and spec.required and name not in result:
                raise TaskOptionsError(
                    f"task {task!r} needs option {name!r}: {spec.allowed()} "
                    "(POST /api/v1/datasets, or `acprop-tuner datasets upload`)"
                )
        if self.check is not None:
            self.check(result)
        return result

    def describe(self) -> dict[str, str]:
        """Option name -> its allowed values and default, for docs and error pages."""
        return {
            name: f"{spec.allowed()} ({_default_text(spec)})" for name, spec in self.options.items()
        }


def _default_text(spec: Option) -> str:
    if isinstance(spec, DatasetOption):
        return "required" if spec.required else "optional"
    return f"default {_default(spec)!r}"


def _default(spec: Option) -> Any:
    # Lists are returned fresh so a caller mutating its options cannot change the schema.
    return list(spec.default) if isinstance(spec, IntListOption) else spec.default
