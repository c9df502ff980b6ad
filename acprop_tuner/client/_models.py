"""The client's view of the service's resources: small frozen dataclasses parsed from JSON.

Parsing is lenient in one direction only: fields the client does not know are ignored (a
newer server keeps older clients working), while a missing required field raises
``KeyError``. Each object keeps the server's JSON as ``raw`` (not part of equality or the
repr) for printing it unchanged (``--json``) or reading a field this client predates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from acprop_tuner.client._baselines import BaselineResult, JobBaseline
from acprop_tuner.client._recommendation import (
    HYPERPARAMETERS,
    Evidence,
    ExpectedLoss,
    Freshness,
    Recommendation,
    Risk,
)

__all__ = [
    "TERMINAL_STATUSES",
    "BaselineResult",
    "Budget",
    "Evidence",
    "ExpectedLoss",
    "Freshness",
    "Job",
    "JobBaseline",
    "Progress",
    "Recommendation",
    "Report",
    "Risk",
    "Trial",
]

# The optimizer's vocabulary as the client writes it (tests/unit/test_client_contract.py).
_HYPERPARAMETERS = HYPERPARAMETERS

# A job in one of these never changes again (the service's JobStatus.active() complement).
TERMINAL_STATUSES = frozenset({"finished", "cancelled", "failed"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _floats(values: list[float | None] | None) -> tuple[float | None, ...] | None:
    return tuple(values) if values is not None else None


@dataclass(frozen=True)
class Progress:
    """How many of a job's trials are in each state (``finished`` counts every ended one)."""

    n_trials: int
    finished: int
    waiting: int
    running: int
    complete: int
    pruned: int
    diverged: int
    failed: int

    @property
    def fraction(self) -> float:
        """Finished trials over the job's budget, in [0, 1]."""
        return self.finished / self.n_trials if self.n_trials else 1.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Progress:
        return cls(**{name: int(data[name]) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Budget:
    n_trials: int
    steps: int
    seeds: int
    report_every: int
    max_attempts: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Budget:
        return cls(**{name: int(data[name]) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Job:
    """A tuning job as the service reports it; ``space`` maps each hyperparameter to
    ``{"value": v}`` (fixed) or ``{"low", "high", "log"}`` (searched)."""

    id: str
    name: str
    status: str
    task: str
    task_options: Mapping[str, Any]
    space: Mapping[str, Mapping[str, Any]]
    budget: Budget
    sampler: str
    pruner: str
    warm_start: bool
    study_name: str
    progress: Progress
    best_value: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    error: str | None
    seed: int | None = None
    #: The reference optimizers trained beside it, and its check, with their state.
    baselines: tuple[JobBaseline, ...] = ()
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether the job has ended (finished, cancelled or failed)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data["id"]),
            name=data["name"],
            status=data["status"],
            task=data["task"]["name"],
            task_options=dict(data["task"].get("options") or {}),
            space={k: dict(v) for k, v in data["space"].items()},
            budget=Budget.from_json(data["budget"]),
            sampler=data["sampler"],
            pruner=data["pruner"],
            warm_start=bool(data.get("warm_start", True)),
            seed=data.get("seed"),
            study_name=data["study_name"],
            progress=Progress.from_json(data["progress"]),
            best_value=data.get("best_value"),
            created_at=datetime.fromisoformat(data["created_at"]),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            cancelled_at=_time(data.get("cancelled_at")),
            error=data.get("error"),
            baselines=tuple(JobBaseline.from_json(b) for b in data.get("baselines") or ()),
            raw=data,
        )


@dataclass(frozen=True)
class Report:
    """An intermediate report of a trial: the loss of each seed at ``step`` (None: not finite)."""

    step: int
    losses: tuple[float | None, ...]


@dataclass(frozen=True)
class Trial:
    """One trial of a job: its parameters, state and results. ``value`` is the final loss of
    a complete trial; a diverged one has ``diverged_at_step`` and ``last_finite_loss``."""

    number: int
    state: str
    source: str
    attempt: int
    params: Mapping[str, float | None]
    value: float | None
    intermediate: tuple[Report, ...]
    diverged_at_step: int | None
    last_finite_loss: float | None
    final_losses: tuple[float | None, ...] | None
    validation_losses: tuple[float | None, ...] | None
    wall_s: float | None
    compile_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: The seeds it trains when not the job's own (a confirmation trial).
    seeds: tuple[int, ...] | None = None
    #: Per seed, the step it diverged at, or None (None as a whole before a worker finished it).
    seeds_diverged_at: tuple[int | None, ...] | None = None
    #: The jax, jaxlib and optax versions it was trained with.
    versions: Mapping[str, str] | None = None
    #: Why the trial failed, as its worker reported it (None for any other trial).
    error: str | None = None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trial:
        return cls(
            number=int(data["number"]),
            state=data["state"],
            source=data["source"],
            attempt=int(data["attempt"]),
            params=dict(data["params"]),
            value=data.get("value"),
            intermediate=tuple(
                Report(int(r["step"]), tuple(r["losses"])) for r in data.get("intermediate", [])
            ),
            diverged_at_step=data.get("diverged_at_step"),
            last_finite_loss=data.get("last_finite_loss"),
            final_losses=_floats(data.get("final_losses")),
            validation_losses=_floats(data.get("validation_losses")),
            wall_s=data.get("wall_s"),
            compile_s=data.get("compile_s"),
            created_at=datetime.fromisoformat(data["created_at"]),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            seeds=tuple(data["seeds"]) if data.get("seeds") is not None else None,
            seeds_diverged_at=(
                tuple(data["seeds_diverged_at"])
                if data.get("seeds_diverged_at") is not None
                else None
            ),
            versions=data.get("versions"),
            error=data.get("error"),
            raw=data,
        )
