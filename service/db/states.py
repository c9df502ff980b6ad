"""The service's status vocabularies: key scopes, job statuses, trial states and sources.

``StrEnum`` s stored as short strings guarded by CHECK constraints (service/db/models.py),
portable between SQLite and Postgres and cheap to extend in a migration. The API's schemas
list them from here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BASELINE_STATES",
    "MAX_ERROR",
    "BaselineKind",
    "JobStatus",
    "KeyScope",
    "TrialSource",
    "TrialState",
]


class KeyScope(StrEnum):
    USER = "user"
    WORKER = "worker"
    ADMIN = "admin"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @classmethod
    def active(cls) -> tuple[JobStatus, ...]:
        return (cls.QUEUED, cls.RUNNING)


class TrialState(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    FAILED = "failed"

    @classmethod
    def finished(cls) -> tuple[TrialState, ...]:
        return (cls.COMPLETE, cls.PRUNED, cls.DIVERGED, cls.FAILED)


#: The longest error text stored on a trial (a worker's report of why it failed).
MAX_ERROR = 1000


class TrialSource(StrEnum):
    WARMUP = "warmup"
    SAMPLER = "sampler"
    CONFIRMATION = "confirmation"  # a candidate trained again on fresh seeds


class BaselineKind(StrEnum):
    """What a baseline run trains (service/db/baseline_models.py)."""

    BASELINE = "baseline"  # a reference optimizer the job named
    CHECK = "check"  # ACProp at the job's recommendation, on the baselines' seeds


#: The states of a baseline run: a trial's, but never pruned (nothing prunes them).
BASELINE_STATES = (
    TrialState.WAITING,
    TrialState.RUNNING,
    TrialState.COMPLETE,
    TrialState.DIVERGED,
    TrialState.FAILED,
)
