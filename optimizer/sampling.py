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
from optimizer.warm_start import warm_start_configs

__all__ = [
    "TPE_STARTUP_TRIALS",
    "WARM_START_ENOUGH",
    "StudySpace",
    "build_pruner",
    "build_sampler",
    "search_space",
    "warm_start_trials",
]

#: Optuna's default random startup trials of TPE, for jobs without a warm start.
TPE_STARTUP_TRIALS = 10
#: Warm-start trials from which TPE starts modelling at once (three learning rates at least:
#: the slope, the valley and the divergent side of most problems).
WARM_START_ENOUGH = 3


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


def warm_start_trials(spec: Mapping[str, Any]) -> int:
    """How many warm-start trials the job's first population holds (see `warm_start`)."""
    if not spec.get("warm_start"):
        return 0
    n_trials = int((spec.get("budget") or {}).get("n_trials") or 0)
    return len(warm_start_configs(OptimizerSpace.from_dict(spec.get("space") or {}), n_trials))


def build_sampler(
    spec: Mapping[str, Any], *, seed: int | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler the job asked for; ``seed`` (e.g. from the job id) unless the spec has one.

    TPE (the default) is Optuna 5's: multivariate over the searched settings and
    pending-aware by constant liar. After a warm start it skips the random startup trials:
    the sweep already spans the learning rates of most problems at two ``eps_root`` levels,
    and on a synthetic problem with a moving divergence edge (docs/recommendation.md, "Sampling
    policy") 10 random startup trials cost share of trials near the optimum without
    teaching the sampler anything the sweep had not.
    """
    name = spec.get("sampler") or "tpe"
    if spec.get("seed") is not None:
        seed = int(spec["seed"])
    if name == "tpe":
        startup = 0 if warm_start_trials(spec) >= WARM_START_ENOUGH else TPE_STARTUP_TRIALS
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
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
