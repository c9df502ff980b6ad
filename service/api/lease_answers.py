"""What `POST /api/v1/leases` answers: leased trials, and baseline runs when the job has no
trial to hand out (docs/architecture.md, the worker protocol)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "BaselineLeaseOut",
    "LeaseOut",
    "LeaseResponse",
    "LeasedBaselineRun",
    "LeasedTrial",
    "TrialTask",
]


class TrialTask(BaseModel):
    name: str | None
    options: dict[str, Any]


class LeasedTrial(BaseModel):
    job_id: str
    trial_id: int
    number: int
    attempt: int
    task: TrialTask
    config: dict[str, float]
    seeds: list[int]
    steps: int
    report_every: int


class LeaseOut(BaseModel):
    token: str
    expires_at: datetime
    ttl_s: float
    trial: LeasedTrial


class LeasedBaselineRun(BaseModel):
    """A baseline run to train: a reference optimizer on the job's task, seeds and steps, or
    the job's check (``optimizer`` "acprop" at the recommendation)."""

    job_id: str
    run_id: int
    number: int
    kind: Literal["baseline", "check"]
    attempt: int
    task: TrialTask
    optimizer: str
    settings: dict[str, float]
    seeds: list[int]
    steps: int
    report_every: int = Field(
        description="the job's report cadence: the chunk a worker trains the check in, so "
        "that it reuses the program of the job's trials (baseline runs send no reports)"
    )


class BaselineLeaseOut(BaseModel):
    token: str
    expires_at: datetime
    ttl_s: float
    run: LeasedBaselineRun


class LeaseResponse(BaseModel):
    leases: list[LeaseOut]
    baselines: list[BaselineLeaseOut] = Field(
        default_factory=list,
        description="baseline runs to train, when the job has no trial to hand out; complete "
        "or fail them (no reports) with their tokens, apart from trials",
    )
    retry_after_s: float | None
