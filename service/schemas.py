"""The jobs API's request schemas (pydantic), translated into the optimizer's JobSpec at the
edge (:meth:`JobCreate.to_spec`); the responses are in service/views.py.

Requests are strict (service/inbound.py): unknown fields are rejected, every float must be
finite, no string or boolean stands in for a number, strings, collections and nesting are
bounded, and no text holds NUL or a lone surrogate. A job's search space is checked against
ACProp's rules by ``optimizer.space`` and its task by
``optimizer.tasks.validate_task_options`` (both jax-free), so a 422 names the offending field.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from optimizer.baselines import DEFAULT_BASELINES
from optimizer.job_spec import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_N_TRIALS,
    DEFAULT_REPORT_EVERY,
    DEFAULT_SEEDS,
    Budget,
    JobSpec,
    TaskChoice,
)
from optimizer.space import Fixed, Range, SearchSpace, SpaceError, validate_entry
from optimizer.tasks import TaskOptionsError, default_steps, validate_task_options
from optimizer.tasks.registry import check_task_name
from optimizer.tuning.names import PRUNERS, SAMPLERS
from service.baseline_schemas import BASELINES_FIELD, BaselineIn, to_baselines
from service.inbound import InboundModel


@functools.cache
def optional_package_available(name: str) -> bool:
    """Whether an optional package can be imported here (found, not imported)."""
    return importlib.util.find_spec(name) is not None


# The names have one home (optimizer/tuning/names.py); the schema lists them.
SamplerName = Literal[SAMPLERS]  # type: ignore[valid-type]
PrunerName = Literal[PRUNERS]  # type: ignore[valid-type]

# Hard bounds of the schema (422 beyond them); per-tenant quotas in the settings are lower.
MAX_TRIALS = 100_000
MAX_STEPS = 10_000_000
MAX_SEEDS = 1_024
MAX_ATTEMPTS = 20
MAX_NAME = 200
MAX_TASK_OPTIONS = 64


class StrictModel(InboundModel):
    model_config = ConfigDict(str_max_length=10_000)


class FixedValue(StrictModel):
    """A hyperparameter held at one value."""

    value: float


class RangeValue(StrictModel):
    """A hyperparameter searched on [low, high] (on a log scale if ``log``)."""

    low: float
    high: float
    log: bool = False


def _entry_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "fixed" if "value" in value else "range"
    return "fixed" if isinstance(value, FixedValue) else "range"


SpaceEntry = Annotated[
    Annotated[FixedValue, Tag("fixed")] | Annotated[RangeValue, Tag("range")],
    Discriminator(_entry_kind),
]


class SpaceIn(StrictModel):
    """The search space; a hyperparameter left out takes its default entry."""

    learning_rate: SpaceEntry | None = Field(
        None, description="default: searched on [1e-5, 1], log scale; must be > 0"
    )
    b1: SpaceEntry | None = Field(None, description="default: 0.9 fixed; in [0, 1)")
    b2: SpaceEntry | None = Field(None, description="default: 0.999 fixed; in [0, 1)")
    eps: SpaceEntry | None = Field(None, description="default: 1e-16 fixed; >= 0")
    eps_root: SpaceEntry | None = Field(
        None, description="default: searched on [1e-16, 1e-6], log scale; >= 0"
    )
    weight_decay: SpaceEntry | None = Field(None, description="default: 0 fixed; >= 0")

    @field_validator("*", mode="after")
    @classmethod
    def _acprop_rules(cls, entry: SpaceEntry | None, info: ValidationInfo) -> SpaceEntry | None:
        if entry is None:
            return None
        domain = (
            Fixed(entry.value)
            if isinstance(entry, FixedValue)
            else Range(entry.low, entry.high, entry.log)
        )
        try:
            validate_entry(str(info.field_name), domain)
        except SpaceError as exc:
            raise PydanticCustomError("value_error", exc.message) from None
        return entry

    def to_domain(self) -> SearchSpace:
        entries: dict[str, Fixed | Range] = {}
        for name in type(self).model_fields:
            entry = getattr(self, name)
            if isinstance(entry, FixedValue):
                entries[name] = Fixed(entry.value)
            elif isinstance(entry, RangeValue):
                entries[name] = Range(entry.low, entry.high, entry.log)
        return SearchSpace(**entries)  # type: ignore[arg-type]


class TaskIn(StrictModel):
    name: str = Field(
        min_length=1,
        max_length=MAX_NAME,
        description="a built-in task, `package.module:factory`, or an entry point name",
    )
    options: dict[Annotated[str, Field(max_length=100)], Any] = Field(
        default_factory=dict, max_length=MAX_TASK_OPTIONS, validate_default=True
    )

    @field_validator("name", mode="after")
    @classmethod
    def _known_task(cls, name: str) -> str:
        try:
            check_task_name(name)
        except TaskOptionsError as exc:
            raise PydanticCustomError("value_error", str(exc)) from None
        return name

    @field_validator("options", mode="after")
    @classmethod
    def _options_valid(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name is None:  # the name already failed
            return options
        try:
            return validate_task_options(name, options)
        except TaskOptionsError as exc:
            raise PydanticCustomError("value_error", str(exc)) from None


class BudgetIn(StrictModel):
    n_trials: int = Field(DEFAULT_N_TRIALS, ge=1, le=MAX_TRIALS, description="trials in the job")
    steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="training steps per trial (default: a built-in task's own "
        "`default_steps`; required for a custom task, whose code the server does not import); "
        "the job shows the resolved value",
    )
    seeds: int = Field(DEFAULT_SEEDS, ge=1, le=MAX_SEEDS, description="seeds trained per trial")
    report_every: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description=f"steps between loss reports (default {DEFAULT_REPORT_EVERY}, or the steps "
        "if fewer)",
    )
    max_attempts: int = Field(
        DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS, description="tries of a trial"
    )

    @field_validator("report_every", mode="after")
    @classmethod
    def _within_steps(cls, value: int | None, info: ValidationInfo) -> int | None:
        steps = info.data.get("steps")
        if value is not None and steps is not None and value > steps:
            raise PydanticCustomError("value_error", f"report_every must be <= steps ({steps})")
        return value


class JobCreate(StrictModel):
    """A tuning job. Only ``task.name`` is required."""

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    task: TaskIn
    space: SpaceIn = Field(default_factory=lambda: SpaceIn.model_validate({}))
    budget: BudgetIn = Field(
        default_factory=lambda: BudgetIn.model_validate({}), validate_default=True
    )
    sampler: SamplerName = "tpe"
    pruner: PrunerName = "none"
    warm_start: bool = Field(
        True, description="begin with a log-spaced learning-rate sweep (see the recommendation)"
    )
    seed: StrictInt | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="the sampler's seed (default: derived from the job id); the same seed and "
        "the same results in the same order give the same trials while the server keeps the "
        "job's study in memory (a restart restarts the sampler's random stream)",
    )
    baselines: list[BaselineIn] | None = BASELINES_FIELD

    @field_validator("baselines", mode="after")
    @classmethod
    def _each_once(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            to_baselines(value)  # a baseline listed twice is a 422 here
        return value

    @field_validator("sampler", mode="after")
    @classmethod
    def _sampler_available(cls, value: str) -> str:
        # Optuna's GPSampler needs PyTorch, an optional extra of the server: refuse the job
        # now with a reason rather than fail it after its first trials.
        if value == "gp" and not optional_package_available("torch"):
            raise PydanticCustomError(
                "value_error",
                "sampler 'gp' needs PyTorch on the server, which is not installed "
                "(pip install 'acprop-tuner[gp]'); use 'tpe', 'random', 'cmaes' or 'qmc'",
            )
        return value

    @field_validator("budget", mode="after")
    @classmethod
    def _resolve_steps(cls, budget: BudgetIn, info: ValidationInfo) -> BudgetIn:
        # A job that names no steps trains its task's own default_steps. A built-in's is known
        # here without JAX; a custom task's is in its code, which the server never imports,
        # so such a job must name its steps (`acprop-tuner tune` reads them from the task).
        # That is checked at submission, after the task's trust check (missing_steps()), so
        # that a name the operator did not allow is refused as such first.
        task = info.data.get("task")
        if budget.steps is None and task is not None:
            steps = default_steps(task.name)
            if steps is None:
                return budget
            if (budget.report_every or 0) > steps:
                raise PydanticCustomError(
                    "value_error",
                    f"budget.report_every must be <= budget.steps, which is {task.name!r}'s "
                    f"default_steps ({steps}) when the job names none",
                )
            budget = budget.model_copy(update={"steps": steps})
        return budget

    def missing_steps(self) -> str | None:
        """Why the job cannot run as asked for lack of steps (a custom task that names none),
        or None."""
        if self.budget.steps is not None:
            return None
        return (
            f"budget.steps is required for the custom task {self.task.name!r}: the server "
            "does not import task code, so it cannot read the task's default_steps; "
            "name the steps (acprop-tuner tune reads them from the task for you)"
        )

    def to_spec(self) -> JobSpec:
        """The job, typed, with every default resolved (stored in ``jobs.spec``)."""
        return JobSpec(
            task=TaskChoice(self.task.name, self.task.options),
            budget=Budget.resolved(**self.budget.model_dump()),
            space=self.space.to_domain(),
            sampler=self.sampler,
            pruner=self.pruner,
            warm_start=self.warm_start,
            seed=self.seed,
            baselines=DEFAULT_BASELINES if self.baselines is None else to_baselines(self.baselines),
        )
