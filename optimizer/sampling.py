"""The sampling policy of a job: from its spec to Optuna objects (the search distributions,
the fixed settings, the sampler and the pruner).

The service's study mirror (`service/broker/mirror.py`) and the quality benchmark
(`bench/recommendation.py`) both build their samplers here, so the benchmark measures the
policy the service runs. Jax-free, and free of the web and the database.

The spec is the JSON the jobs API stored after validating it (issue #3): `space` maps each
ACProp hyperparameter to `{"value": x}` (fixed) or `{"low", "high", "log"}` (searched);
`sampler` and `pruner` are names; `budget.steps` bounds the pruners' resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from optimizer.space import HYPERPARAMETERS
from optimizer.space import SearchSpace as OptimizerSpace

__all__ = ["StudySpace", "build_pruner", "build_sampler", "search_space"]


@dataclass(frozen=True, slots=True)
class StudySpace:
    """The searched hyperparameters (as Optuna distributions) and the fixed ones."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, float]

    def config(self, sampled: Mapping[str, float]) -> dict[str, float]:
        """The full ACProp configuration for a trial: sampled values over the fixed ones."""
        config = dict(self.fixed)
        config.update({k: float(v) for k, v in sampled.items()})
        return {k: config[k] for k in HYPERPARAMETERS if k in config}


def search_space(spec: Mapping[str, Any]) -> StudySpace:
    """Read the search space of a job spec (entries left out take optimizer.space defaults)."""
    space = OptimizerSpace.from_dict(spec.get("space") or {})
    return StudySpace(space.distributions(), space.fixed)


def build_sampler(spec: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    """The sampler the job asked for (default TPE, which is pending-aware by constant liar)."""
    name = spec.get("sampler") or "tpe"
    seed = spec.get("seed")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def build_pruner(spec: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner the job asked for (default none)."""
    name = spec.get("pruner") or "none"
    steps = int((spec.get("budget") or {}).get("steps") or 1)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(steps, 1))
    raise ValueError(f"unknown pruner {name!r}")
