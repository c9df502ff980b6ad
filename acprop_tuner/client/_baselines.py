"""The client's view of a job's baselines: the reference optimizers it trains beside its
trials (``Job.baselines``, with their state) and their results beside ACProp at the
recommendation, on the same seeds (``Recommendation.baselines``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BaselineResult", "JobBaseline"]


def _opt_tuple(values: Any) -> tuple[Any, ...]:
    return tuple(values) if values is not None else ()


@dataclass(frozen=True)
class JobBaseline:
    """One baseline run of a job: a reference optimizer (``kind`` ``baseline``) or ACProp at
    the recommendation on the baselines' seeds (``check``), and its ``state``."""

    kind: str
    optimizer: str
    label: str
    settings: Mapping[str, float]
    state: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobBaseline:
        return cls(
            kind=data["kind"],
            optimizer=data["optimizer"],
            label=data["label"],
            settings=dict(data.get("settings") or {}),
            state=data["state"],
        )


@dataclass(frozen=True)
class BaselineResult:
    """A reference optimizer beside ACProp at the recommendation, on the same seeds: its
    validation loss per seed, their mean and spread, the seeds that diverged, and
    ``relative_difference`` = (ACProp - baseline) / |baseline| of the means (below 0: ACProp
    reached a lower loss; None while either is not measured)."""

    optimizer: str
    settings: Mapping[str, float]
    label: str
    state: str
    seeds: tuple[int, ...]
    validation_losses: tuple[float | None, ...]
    validation_loss: float | None
    seed_std: float | None
    diverged_seeds: tuple[int, ...]
    acprop_validation_loss: float | None
    acprop_diverged_seeds: tuple[int, ...]
    acprop_from: str | None
    relative_difference: float | None
    error: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaselineResult:
        return cls(
            optimizer=data["optimizer"],
            settings=dict(data.get("settings") or {}),
            label=data["label"],
            state=data["state"],
            seeds=_opt_tuple(data.get("seeds")),
            validation_losses=_opt_tuple(data.get("validation_losses")),
            validation_loss=data.get("validation_loss"),
            seed_std=data.get("seed_std"),
            diverged_seeds=_opt_tuple(data.get("diverged_seeds")),
            acprop_validation_loss=data.get("acprop_validation_loss"),
            acprop_diverged_seeds=_opt_tuple(data.get("acprop_diverged_seeds")),
            acprop_from=data.get("acprop_from"),
            relative_difference=data.get("relative_difference"),
            error=data.get("error"),
        )
