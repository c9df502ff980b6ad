"""Response models of the reads that tables and plots are drawn from (the dashboard's): the
trials as columns, loss curves, parameter importance and the tenant's workers. Translated
from the use cases' results in service/api/insights.py. Like every response, they never
carry a non-finite float (rendered as ``null``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from service.db.models import TrialSource, TrialState
from service.views import OutModel, finite_or_none

__all__ = [
    "CurveList",
    "CurveOut",
    "ImportanceOut",
    "TrialColumnsOut",
    "WorkerList",
    "WorkerOut",
]


class TrialColumnsOut(OutModel):
    """Trials as columns: entry i of every list is the same trial."""

    number: list[int]
    state: list[TrialState]
    source: list[TrialSource]
    attempt: list[int]
    params: dict[str, list[float | None]] = Field(
        description="each hyperparameter's value per trial (tuned and fixed ones)"
    )
    value: list[float | None] = Field(
        description="the final loss of a complete or pruned trial: the mean validation loss "
        "where the worker measured one for every seed, else the mean final training loss"
    )
    on_validation: list[bool] = Field(description="whether `value` is a validation loss")
    diverged_at_step: list[int | None]
    last_step: list[int | None] = Field(
        description="the last step a waiting or running trial reported (null otherwise)"
    )
    wall_s: list[float | None]
    errors: dict[str, str] = Field(
        description="why failed trials failed, by trial number (only those that did)"
    )
    next_after: int | None = Field(
        description="pass as `after` to get the next page; null when this page was the last"
    )

    @field_validator("params", "value", "wall_s", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        return finite_or_none(value)


class CurveOut(OutModel):
    number: int
    state: TrialState
    attempt: int
    diverged_at_step: int | None
    steps: list[int] = Field(description="reported steps of the current attempt, ascending")
    loss: list[float | None] = Field(
        description="the mean training loss over the seeds still finite at each step "
        "(null: none was)"
    )

    @field_validator("loss", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        return finite_or_none(value)


class CurveList(OutModel):
    curves: list[CurveOut]
    max_points: int = Field(description="most points per curve (longer ones are thinned)")


class ImportanceOut(OutModel):
    importances: dict[str, float] | None = Field(
        description="each tuned hyperparameter's share (summing to 1), most important first; "
        "null while there is none, with the `reason`"
    )
    evaluator: str
    n_trials: int = Field(description="finished trials (complete and diverged) it is from")
    n_read: int = Field(
        description="how many of them the evaluator read (at most 1,000, evenly spread over "
        "the trial numbers)"
    )
    n_finished: int = Field(description="finished trials now; more than n_trials: stale")
    computing: bool = Field(description="a newer answer is being computed")
    reason: str | None


class WorkerOut(OutModel):
    worker_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    capacity: int | None = Field(description="trials it last asked for at once")
    trials_held: int = Field(description="trials it holds now (live leases)")
    trials_finished: int = Field(description="trials it finished with a result")
    trials_failed: int
    compile_s: float = Field(description="seconds compiling, once per population it trained")
    train_s: float = Field(description="seconds training, once per population it trained")
    versions: dict[str, str] | None


class WorkerList(OutModel):
    workers: list[WorkerOut]
    total: int
    lease_ttl_s: float = Field(
        description="a worker not seen for longer than this holds no live lease any more"
    )
