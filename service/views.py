"""How the API shows jobs and trials: its response models (pydantic), translated from the
table rows at the edge (service/api/jobs.py). Responses never carry a non-finite float (it
would not be valid JSON): such values are rendered as ``null``. Requests are in
service/schemas.py; the recommendation's model is the optimizer's own dataclass."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.db.models import BaselineKind, JobStatus, TrialSource, TrialState
from service.schemas import PrunerName, SamplerName

__all__ = [
    "BaselineOut",
    "BudgetOut",
    "FixedOut",
    "IntermediateOut",
    "JobList",
    "JobOut",
    "Progress",
    "RangeOut",
    "Status",
    "TaskOut",
    "TrialList",
    "TrialOut",
    "finite_or_none",
]


def finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    return value


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TaskOut(OutModel):
    name: str
    options: dict[str, Any]


class BudgetOut(OutModel):
    n_trials: int
    steps: int
    seeds: int
    report_every: int
    max_attempts: int


class FixedOut(OutModel):
    value: float


class RangeOut(OutModel):
    low: float
    high: float
    log: bool


SpaceEntryOut = FixedOut | RangeOut


class Progress(OutModel):
    n_trials: int = Field(description="trials the job will run")
    finished: int = Field(description="complete + pruned + diverged + failed")
    waiting: int
    running: int
    complete: int
    pruned: int
    diverged: int
    failed: int


class BaselineOut(OutModel):
    """One baseline run of a job: a reference optimizer (``kind`` baseline) or ACProp at the
    recommendation on the baselines' seeds (``kind`` check); results in the recommendation."""

    kind: BaselineKind
    optimizer: str
    label: str
    settings: dict[str, float]
    state: TrialState


class JobOut(OutModel):
    id: uuid.UUID
    name: str
    status: JobStatus
    task: TaskOut
    space: dict[str, SpaceEntryOut]
    budget: BudgetOut
    sampler: SamplerName
    pruner: PrunerName
    warm_start: bool
    seed: int | None = Field(description="the sampler's seed if the job set one")
    baselines: list[BaselineOut] = Field(
        default_factory=list,
        description="the reference optimizers trained beside the job, and its check, with "
        "their state (their results are in the recommendation)",
    )
    study_name: str
    progress: Progress
    best_value: float | None = Field(description="lowest final loss of a complete trial")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    error: str | None

    @field_validator("best_value", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        return finite_or_none(value)


class JobList(OutModel):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class IntermediateOut(OutModel):
    step: int
    losses: list[float | None] = Field(description="one loss per seed (null: not finite)")

    @field_validator("losses", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        return finite_or_none(value)


class TrialOut(OutModel):
    number: int
    state: TrialState
    source: TrialSource
    seeds: list[int] | None = Field(
        None, description="the seeds it trains when not the job's own (a confirmation trial)"
    )
    attempt: int
    params: dict[str, float | None]
    value: float | None
    intermediate: list[IntermediateOut]
    diverged_at_step: int | None = Field(
        description="the first step any seed diverged at; null when no seed diverged"
    )
    seeds_diverged_at: list[int | None] | None = Field(
        description="per seed (in the order of `final_losses`), the step it diverged at, or "
        "null where it did not diverge; null as a whole for a trial not finished by a worker, "
        "or finished before the server recorded divergence per seed"
    )
    last_finite_loss: float | None
    final_losses: list[float | None] | None
    validation_losses: list[float | None] | None
    wall_s: float | None
    compile_s: float | None
    versions: dict[str, str] | None = Field(
        None, description="the jax, jaxlib and optax versions the trial was trained with"
    )
    error: str | None = Field(
        None, description="why the trial failed, as its worker reported it (class and message)"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @field_validator(
        "value",
        "last_finite_loss",
        "final_losses",
        "validation_losses",
        "wall_s",
        "compile_s",
        "params",
        mode="before",
    )
    @classmethod
    def _finite(cls, value: Any) -> Any:
        return finite_or_none(value)


class TrialList(OutModel):
    trials: list[TrialOut]
    next_after: int | None = Field(
        description="pass as `after` to get the next page; null when this page was the last"
    )


class Status(OutModel):
    status: str
