"""The sampling policy of a job: from its spec to Optuna objects (the search distributions,
the fixed settings, the sampler and the pruner).

The service's study mirrors (service/broker/registry.py) and the quality benchmark
(bench/recommendation.py) both build their samplers here, so the benchmark measures the
policy the service runs. Jax-free, and free of the web and the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import optuna
from optuna.distributions import BaseDistribution

from optimizer.job_spec import JobSpec
from optimizer.space import Range, SearchSpace
from optimizer.tuning.names import PRUNERS, SAMPLERS
from optimizer.warm_start import anchor_settings

__all__ = [
    "LINE_SHARE",
    "TPE_STARTUP_TRIALS",
    "WARM_START_ENOUGH",
    "LinePlan",
    "StudySpace",
    "build_pruner",
    "build_sampler",
    "line_plan",
    "search_space",
]

#: Optuna's default random startup trials of TPE, for jobs without a warm start.
TPE_STARTUP_TRIALS = 10
#: Warm-start trials from which TPE starts modelling at once (three learning rates at least:
#: the slope, the valley and the divergent side of most problems).
WARM_START_ENOUGH = 3
#: Share of a job's trials (the warm start's included) that may lie on the anchor line: the
#: line refinement proposes while fewer do, the sampler asks otherwise (docs/recommendation.md,
#: "Line refinement").
LINE_SHARE = 2.0 / 3.0


@dataclass(frozen=True)
class StudySpace:
    """A job's search space with its Optuna distributions built once (a study asks with the
    same distributions for every trial)."""

    space: SearchSpace
    distributions: dict[str, BaseDistribution] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "distributions", self.space.distributions())

    @property
    def fixed(self) -> dict[str, float]:
        return self.space.fixed

    def config(self, sampled: Mapping[str, float]) -> dict[str, float]:
        """The full ACProp configuration for a trial: sampled values over the fixed ones."""
        return self.space.config(sampled)


@dataclass(frozen=True)
class LinePlan:
    """A job's line refinement (optimizer/tuning/line_search.py): the anchor settings of
    every hyperparameter but the learning rate, the learning-rate range in ``log10``, and the
    share of the trials the line may take."""

    anchor: Mapping[str, float]
    low: float
    high: float
    share: float = LINE_SHARE

    def on_line(self, params: Mapping[str, float]) -> bool:
        """Whether a configuration lies on the line (every other setting at its anchor)."""
        return all(
            name in params and math.isclose(float(params[name]), value, rel_tol=1e-9)
            for name, value in self.anchor.items()
        )


def line_plan(spec: JobSpec) -> LinePlan | None:
    """The job's line refinement: with the warm start, over a log learning-rate range; None
    otherwise (every trial after the sweep is then the sampler's)."""
    lr = spec.space.learning_rate
    if not (spec.warm_start and spec.warm_start_configs and isinstance(lr, Range) and lr.log):
        return None
    return LinePlan(anchor_settings(spec.space), math.log10(lr.low), math.log10(lr.high))


def search_space(spec: JobSpec) -> StudySpace:
    """The job's search space as Optuna will be asked with it."""
    return StudySpace(spec.space)


def build_sampler(spec: JobSpec, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler the job asked for; ``seed`` (e.g. from the job id) unless the spec has one.

    TPE (the default) is Optuna 5's: multivariate over the searched settings and
    pending-aware by constant liar. After a warm start it skips the random startup trials:
    the sweep already spans the learning rates of most problems at two ``eps_root`` levels,
    and on a synthetic problem with a moving divergence edge (docs/recommendation.md, "Sampling
    policy") 10 random startup trials cost share of trials near the optimum without
    teaching the sampler anything the sweep had not.
    """
    if spec.seed is not None:
        seed = spec.seed
    if spec.sampler == "tpe":
        warm = len(spec.warm_start_configs) >= WARM_START_ENOUGH
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=0 if warm else TPE_STARTUP_TRIALS
        )
    return _SAMPLERS[spec.sampler](seed)


_SAMPLERS: Mapping[str, Callable[[int | None], optuna.samplers.BaseSampler]] = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
}


def build_pruner(spec: JobSpec) -> optuna.pruners.BasePruner:
    """The pruner the job asked for (default none)."""
    return _PRUNERS[spec.pruner](spec.budget.steps)


_PRUNERS: Mapping[str, Callable[[int], optuna.pruners.BasePruner]] = {
    "none": lambda steps: optuna.pruners.NopPruner(),
    "median": lambda steps: optuna.pruners.MedianPruner(),
    "successive-halving": lambda steps: optuna.pruners.SuccessiveHalvingPruner(),
    "hyperband": lambda steps: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps),
}
# Every name a job may choose has its Optuna object here (optimizer/tuning/names.py).
assert set(_SAMPLERS) | {"tpe"} == set(SAMPLERS) and set(_PRUNERS) == set(PRUNERS)
