"""`JobSpec`: one tuning job, typed once, immutable, with every default resolved.

The API builds it from a validated request (service/schemas.py), the service stores it
(``acprop_jobs.spec``, as :meth:`JobSpec.to_dict`) and reads it back typed
(:meth:`JobSpec.from_dict`, through the column's type), and every consumer takes it: the
jobs use cases, the broker, the tuning policy, the quality benchmark. What derives from it (the
warm-start sweep) is computed once, here. jax-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from optimizer.baselines import DEFAULT_BASELINES, MAX_BASELINES, Baseline, BaselineError
from optimizer.space import SearchSpace, SpaceError
from optimizer.tuning.names import PRUNERS, SAMPLERS
from optimizer.warm_start import warm_start_configs

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_N_TRIALS",
    "DEFAULT_REPORT_EVERY",
    "DEFAULT_SEEDS",
    "DEFAULT_STEPS",
    "Budget",
    "JobSpec",
    "JobSpecError",
    "TaskChoice",
]

#: Steps between loss reports when a job names none (or its steps, if fewer).
DEFAULT_REPORT_EVERY = 25
#: A job's budget where its request names none (the API's defaults).
DEFAULT_N_TRIALS, DEFAULT_STEPS, DEFAULT_SEEDS, DEFAULT_MAX_ATTEMPTS = 64, 300, 2, 3


class JobSpecError(ValueError):
    """A stored or built job spec that does not hold together; the message says what."""


@dataclass(frozen=True, slots=True)
class TaskChoice:
    """The job's task: a name (built-in, entry point or `module:factory`) and its options,
    already validated against the task's schema."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}


@dataclass(frozen=True, slots=True)
class Budget:
    """How much a job may train: trials, steps per trial, seeds per trial, the report
    cadence, and how many leases of one trial may expire before it fails."""

    n_trials: int
    steps: int
    seeds: int
    report_every: int
    max_attempts: int

    def __post_init__(self) -> None:
        for name in ("n_trials", "steps", "seeds", "report_every", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise JobSpecError(f"budget.{name} must be an integer >= 1, got {value!r}")
        if self.report_every > self.steps:
            raise JobSpecError(f"budget.report_every must be <= steps ({self.steps})")

    @classmethod
    def resolved(
        cls,
        *,
        n_trials: int = DEFAULT_N_TRIALS,
        steps: int = DEFAULT_STEPS,
        seeds: int = DEFAULT_SEEDS,
        report_every: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> Budget:
        """A budget whose report cadence defaults to ``DEFAULT_REPORT_EVERY`` (or ``steps``)."""
        every = min(DEFAULT_REPORT_EVERY, steps) if report_every is None else report_every
        return cls(n_trials, steps, seeds, every, max_attempts)

    def to_dict(self) -> dict[str, int]:
        return {
            "n_trials": self.n_trials,
            "steps": self.steps,
            "seeds": self.seeds,
            "report_every": self.report_every,
            "max_attempts": self.max_attempts,
        }


@dataclass(frozen=True)
class JobSpec:
    """A tuning job: task, search space, budget, sampler, pruner, warm start, seed, and the
    baselines trained beside it (reference optimizers on the job's seeds and steps)."""

    task: TaskChoice
    budget: Budget
    space: SearchSpace = field(default_factory=SearchSpace)
    sampler: str = "tpe"
    pruner: str = "none"
    warm_start: bool = True
    #: The sampler's seed; None: derived from the job id by whoever runs it.
    seed: int | None = None
    #: Reference optimizers trained on the job's seeds (optimizer/baselines.py); () for none.
    baselines: tuple[Baseline, ...] = DEFAULT_BASELINES

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise JobSpecError(
                f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}"
            )
        if self.pruner not in PRUNERS:
            raise JobSpecError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if self.seed is not None and not (0 <= self.seed < 2**32):
            raise JobSpecError(f"seed must be in [0, 2^32), got {self.seed!r}")
        object.__setattr__(self, "baselines", tuple(self.baselines))
        if len(self.baselines) > MAX_BASELINES:
            raise JobSpecError(f"at most {MAX_BASELINES} baselines, got {len(self.baselines)}")

    @classmethod
    def for_task(
        cls, name: str, options: Mapping[str, Any] | None = None, **fields: Any
    ) -> JobSpec:
        """A spec for task ``name``: budget fields (``n_trials``, ``steps``, ...) and the
        others (``space``, ``sampler``, ...) by keyword, the API's defaults for the rest.
        For programs that make jobs themselves (the quality benchmark, tests)."""
        budget_fields = {k: fields.pop(k) for k in list(fields) if k in Budget.__dataclass_fields__}
        return cls(
            task=TaskChoice(name, options or {}), budget=Budget.resolved(**budget_fields), **fields
        )

    @cached_property
    def warm_start_configs(self) -> tuple[Mapping[str, float], ...]:
        """The job's warm-start sweep (full configurations), computed once; empty without."""
        if not self.warm_start:
            return ()
        return tuple(
            MappingProxyType(c) for c in warm_start_configs(self.space, self.budget.n_trials)
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ``acprop_jobs.spec`` (and shown by the API)."""
        out: dict[str, Any] = {
            "task": self.task.to_dict(),
            "space": self.space.to_dict(),
            "budget": self.budget.to_dict(),
            "sampler": self.sampler,
            "pruner": self.pruner,
            "warm_start": self.warm_start,
            "baselines": [b.to_dict() for b in self.baselines],
        }
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        """The inverse of :meth:`to_dict`.

        Raises:
            JobSpecError: naming what is missing or wrong.
        """
        try:
            task, budget = data["task"], data["budget"]
            return cls(
                task=TaskChoice(str(task["name"]), dict(task.get("options") or {})),
                budget=Budget(**{k: budget[k] for k in Budget.__dataclass_fields__}),
                space=SearchSpace.from_dict(data.get("space") or {}),
                sampler=data.get("sampler", "tpe"),
                pruner=data.get("pruner", "none"),
                warm_start=bool(data.get("warm_start", True)),
                seed=data.get("seed"),
                # A job stored before baselines existed had none.
                baselines=tuple(Baseline.from_dict(b) for b in data.get("baselines") or ()),
            )
        except (KeyError, TypeError, AttributeError, SpaceError, BaselineError) as exc:
            raise JobSpecError(f"not a job spec: {type(exc).__name__}: {exc}") from None
