"""The client's view of a job's recommendation: the recommended ACProp configuration with
its expected loss, evidence, divergence risk, and the job's baselines beside it (parsed from
the JSON of ``GET /jobs/{id}/recommendation``, leniently as in ``_models``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acprop_tuner.client._baselines import BaselineResult

__all__ = [
    "HYPERPARAMETERS",
    "Evidence",
    "ExpectedLoss",
    "Freshness",
    "Recommendation",
    "Risk",
]

#: ACProp's hyperparameters in optax's argument order (the optimizer's, kept in step by
#: tests/unit/test_client_contract.py).
HYPERPARAMETERS = ("learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay")


@dataclass(frozen=True)
class ExpectedLoss:
    """The loss the recommended configuration is predicted to reach, with its spreads."""

    mean: float
    seed_std: float
    model_std: float


@dataclass(frozen=True)
class Evidence:
    """Which finished trials (and seeds) the recommendation rests on."""

    n_trials: int
    n_trials_used: int
    n_seeds_used: int
    n_trials_diverged: int
    n_seeds_diverged: int
    n_seeds_missing: int
    tuned: tuple[str, ...]
    trials_used: tuple[int, ...] = field(repr=False)
    #: The trials the loss model was fitted on (all the used ones up to 400; above, a
    #: bounded subset: docs/recommendation.md, "At scale"); None from older servers.
    n_trials_fitted: int | None = None


@dataclass(frozen=True)
class Risk:
    """The chance that a fresh seed diverges at the recommendation: an estimate, its upper
    bound at ``confidence``, and the nearby seeds they rest on (``thin``: too few)."""

    probability: float
    upper_bound: float
    confidence: float
    n_seeds: int
    n_diverged: int
    target: float
    meets_target: bool
    thin: bool


@dataclass(frozen=True)
class Freshness:
    """Which finished trials the answer rests on against the job now: the server fits in the
    background and, while it fits newer trials (``refitting``), serves the answer on older
    ones (``trials_behind`` finished since, ``age_s`` seconds old, never over ``max_lag_s``)."""

    current: bool
    trials_used: int
    trials_finished: int
    trials_behind: int
    age_s: float
    refitting: bool
    max_lag_s: float


@dataclass(frozen=True)
class Recommendation:
    """A job's recommended ACProp configuration (``provisional`` while the job runs,
    ``final`` once it ended) with its learning-rate interval, the divergence edge (None when
    no comparable trial diverged), the evidence, and ``optax``: the line of code to paste."""

    job_id: str
    status: str
    learning_rate: float
    b1: float
    b2: float
    eps: float
    eps_root: float
    weight_decay: float
    lr_interval: tuple[float, float]
    divergence_lr: float | None
    expected_loss: ExpectedLoss
    evidence: Evidence
    margin: float
    tolerance: float
    optax: str
    #: What set the learning rate: ``loss``, ``edge``, ``evidence`` or ``range``.
    bounded_by: str = "loss"
    risk: Risk | None = None
    #: The jax/jaxlib/optax versions the trials were trained with, each with ``n_trials``.
    versions: tuple[Mapping[str, Any], ...] = ()
    #: What a user should know before using the answer (e.g. trials of mixed versions).
    warnings: tuple[str, ...] = ()
    #: The job's baselines beside it, on the same seeds, and the same in one line.
    baselines: tuple[BaselineResult, ...] = ()
    comparison: str | None = None
    #: Which trials it rests on against the job now (None where the server does not say).
    freshness: Freshness | None = None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def config(self) -> dict[str, float]:
        """The six ACProp hyperparameters, e.g. for ``optimizer.config.ACPropConfig(**c)``."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recommendation:
        e, v = data["expected_loss"], data["evidence"]
        lo, hi = data["lr_interval"]
        return cls(
            job_id=str(data["job_id"]),
            status=data["status"],
            **{name: float(data[name]) for name in HYPERPARAMETERS},
            lr_interval=(float(lo), float(hi)),
            divergence_lr=data.get("divergence_lr"),
            expected_loss=ExpectedLoss(e["mean"], e["seed_std"], e["model_std"]),
            evidence=Evidence(
                n_trials=v["n_trials"],
                n_trials_used=v["n_trials_used"],
                n_seeds_used=v["n_seeds_used"],
                n_trials_diverged=v["n_trials_diverged"],
                n_seeds_diverged=v["n_seeds_diverged"],
                n_seeds_missing=v.get("n_seeds_missing", 0),
                tuned=tuple(v["tuned"]),
                trials_used=tuple(v.get("trials_used", ())),
                n_trials_fitted=v.get("n_trials_fitted"),
            ),
            margin=float(data["margin"]),
            tolerance=float(data["tolerance"]),
            optax=data["optax"],
            bounded_by=data.get("bounded_by", "loss"),
            risk=Risk(**data["risk"]) if data.get("risk") else None,
            versions=tuple(data.get("versions") or ()),
            warnings=tuple(data.get("warnings") or ()),
            baselines=tuple(BaselineResult.from_json(b) for b in data.get("baselines") or ()),
            comparison=data.get("comparison"),
            freshness=Freshness(**data["freshness"]) if data.get("freshness") else None,
            raw=data,
        )
