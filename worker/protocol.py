"""The worker protocol's messages, as the worker sees them (docs/architecture.md).

Owns the typed shapes of what `/api/v1/leases/...` answers and what the worker sends, and their
translation from and to JSON. Kept apart from the HTTP client so the training loop can build and
read them without knowing anything about transport, retries or fencing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from optimizer import versions as training_versions

# Job and trial ids are whatever JSON scalar the server uses (integers or UUID strings); the
# worker only echoes them into its journal, so it keeps them as they came.
Id = int | str


@dataclass(frozen=True)
class TaskSpec:
    """The job's task: a registry name and its validated options."""

    name: str
    options: Mapping[str, Any]

    def cache_key(self) -> tuple[str, str]:
        # Options are a small JSON object; a canonical dump makes them hashable and stable.
        import json

        return self.name, json.dumps(dict(self.options), sort_keys=True)


@dataclass(frozen=True)
class TrialSpec:
    """One trial to train: its identity, configuration, seeds and schedule."""

    job_id: Id
    trial_id: Id
    number: int
    attempt: int
    task: TaskSpec
    config: Mapping[str, float]
    seeds: tuple[int, ...]
    steps: int
    report_every: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialSpec:
        task = data["task"]
        return cls(
            job_id=data["job_id"],
            trial_id=data["trial_id"],
            number=int(data["number"]),
            attempt=int(data["attempt"]),
            task=TaskSpec(name=str(task["name"]), options=dict(task.get("options") or {})),
            config={k: float(v) for k, v in data["config"].items() if v is not None},
            seeds=tuple(int(s) for s in data["seeds"]),
            steps=int(data["steps"]),
            report_every=int(data["report_every"]),
        )


@dataclass(frozen=True)
class Lease:
    """A trial held by this worker until `expires_at`, fenced by `token`."""

    token: str
    expires_at: str
    ttl_s: float
    trial: TrialSpec

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Lease:
        return cls(
            token=str(data["token"]),
            expires_at=str(data.get("expires_at", "")),
            ttl_s=float(data["ttl_s"]),
            trial=TrialSpec.from_json(data["trial"]),
        )


@dataclass(frozen=True)
class BaselineRunSpec:
    """One baseline run to train: a reference optimizer (``kind`` "baseline") or ACProp at
    the job's recommendation (``kind`` "check", ``optimizer`` "acprop") on the job's task,
    these seeds and steps (optimizer/references.py)."""

    job_id: Id
    run_id: Id
    number: int
    kind: str
    attempt: int
    task: TaskSpec
    optimizer: str
    settings: Mapping[str, float]
    seeds: tuple[int, ...]
    steps: int
    #: The job's report cadence (the check trains in chunks of it, in the trials' program).
    report_every: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaselineRunSpec:
        task = data["task"]
        return cls(
            job_id=data["job_id"],
            run_id=data["run_id"],
            number=int(data["number"]),
            kind=str(data.get("kind", "baseline")),
            attempt=int(data["attempt"]),
            task=TaskSpec(name=str(task["name"]), options=dict(task.get("options") or {})),
            optimizer=str(data["optimizer"]),
            settings={k: float(v) for k, v in (data.get("settings") or {}).items()},
            seeds=tuple(int(s) for s in data["seeds"]),
            steps=int(data["steps"]),
            report_every=int(data.get("report_every") or data["steps"]),
        )


@dataclass(frozen=True)
class BaselineLease:
    """A baseline run held by this worker until `expires_at`, fenced by `token`."""

    token: str
    expires_at: str
    ttl_s: float
    run: BaselineRunSpec

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaselineLease:
        return cls(
            token=str(data["token"]),
            expires_at=str(data.get("expires_at", "")),
            ttl_s=float(data["ttl_s"]),
            run=BaselineRunSpec.from_json(data["run"]),
        )


@dataclass(frozen=True)
class LeaseAnswer:
    leases: tuple[Lease, ...]
    retry_after_s: float | None
    #: Baseline runs, handed out when the job has no trial to train.
    baselines: tuple[BaselineLease, ...] = ()


@dataclass(frozen=True)
class HeartbeatAnswer:
    held: frozenset[str]
    lost: frozenset[str]


@dataclass(frozen=True)
class ReportAnswer:
    """`stop`: trials the server wants stopped; `lost`: trials whose lease is gone (409)."""

    accepted: tuple[str, ...]
    stop: frozenset[str]
    lost: frozenset[str]


@dataclass(frozen=True)
class CompleteAnswer:
    accepted: tuple[str, ...]
    lost: frozenset[str]


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN/Infinity and the server stores no non-finite loss: send null instead."""
    value = float(value)
    return value if math.isfinite(value) else None


@lru_cache(maxsize=1)
def installed_versions() -> Mapping[str, str]:
    """This worker's training versions, read once per process (they cannot change under it)."""
    return MappingProxyType(training_versions.installed())


@dataclass(frozen=True)
class Report:
    """One trial's losses per seed at `step` (the end of a chunk)."""

    token: str
    step: int
    losses: tuple[float | None, ...]

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "step": self.step, "losses": list(self.losses)}


@dataclass(frozen=True)
class Result:
    """One trial's outcome, per seed where the protocol asks for it."""

    token: str
    final_losses: tuple[float | None, ...]
    validation_losses: tuple[float | None, ...]
    last_finite_losses: tuple[float | None, ...]
    diverged_at_step: tuple[int | None, ...]
    pruned: bool
    wall_s: float
    compile_s: float
    #: The jax, jaxlib and optax versions that trained it (this process's, by default).
    versions: Mapping[str, str] = field(default_factory=installed_versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "final_losses": list(self.final_losses),
            "validation_losses": list(self.validation_losses),
            "last_finite_losses": list(self.last_finite_losses),
            "diverged_at_step": list(self.diverged_at_step),
            "pruned": self.pruned,
            "wall_s": round(self.wall_s, 6),
            "compile_s": round(self.compile_s, 6),
            "versions": dict(self.versions),
        }


@dataclass(frozen=True)
class Failure:
    """A trial this worker could not build or train, and why."""

    token: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "error": self.error}


#: The longest reason a worker sends (the server stores at most this much).
MAX_ERROR = 1000


def describe_error(exc: BaseException) -> str:
    """An exception as a user may read it: its class and message, no traceback, bounded.
    JAX's tracer errors run to pages; the first lines say what went wrong."""
    message = " ".join(str(exc).split("\n")[:3]).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
