"""Which tuned settings matter: Optuna's parameter importance over a job's finished trials.

The trials are those the job's study learns from: complete trials with their value, and
diverged trials ranked worse than every finished one (:func:`divergence_penalty`, as the
sampler is told), so a setting that decides whether training diverges counts as important.
The evaluator is PED-ANOVA (Optuna 5's default): per setting, how differently the best 10 %
of trials are spread over the search space than all of them, measured in the distribution's
own coordinates (log settings on a log scale); the importances are normalised to sum to 1.

Optuna's evaluators read a study, and building an in-memory study costs about 0.1 ms a trial
in Python (0.5 s at 5,000 trials, holding the API process's interpreter lock), so a job with
more than `MAX_TRIALS` finished trials is judged on `MAX_TRIALS` of them, evenly spread over
its trial numbers: the best tenth of a thousand trials is a hundred, plenty for PED-ANOVA's
comparison, and the cost stays bounded whatever the job's size (about 0.12 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import create_trial

from optimizer.space import SearchSpace
from optimizer.tuning.outcome import divergence_penalty

__all__ = [
    "EVALUATOR",
    "MAX_TRIALS",
    "MIN_TRIALS",
    "FinishedTrial",
    "Importances",
    "NotEnoughTrials",
    "param_importances",
]

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per call

EVALUATOR = "PED-ANOVA"
#: Fewer finished trials than this say nothing about which setting matters.
MIN_TRIALS = 10
#: The most trials one evaluation reads (evenly spread over the job's trial numbers).
MAX_TRIALS = 1_000


class NotEnoughTrials(Exception):
    """No importance yet, and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FinishedTrial:
    """A finished trial as the importance reads it (``value`` None: it diverged)."""

    params: Mapping[str, float]
    value: float | None
    diverged_at_step: int | None = None
    number: int = 0


@dataclass(frozen=True, slots=True)
class Importances:
    """Each tuned setting's share of the importance (summing to 1), most important first."""

    values: dict[str, float]
    evaluator: str
    n_trials: int  # the trials it read (at most MAX_TRIALS)


def param_importances(
    space: SearchSpace, trials: Sequence[FinishedTrial], *, steps: int
) -> Importances:
    """The tuned settings' importances over `trials` (complete and diverged ones)."""
    distributions = space.distributions()
    if len(distributions) < 2:
        raise NotEnoughTrials("importance compares tuned settings, and this job tunes one")
    usable = [t for t in trials if _inside(t.params, distributions)]
    complete = [t.value for t in usable if t.value is not None and math.isfinite(t.value)]
    if len(usable) < MIN_TRIALS or len(complete) < 2:
        raise NotEnoughTrials(
            f"{len(usable)} finished trials ({len(complete)} complete): importance needs "
            f"at least {MIN_TRIALS}, two of them complete"
        )
    if len(usable) > MAX_TRIALS:
        usable = sorted(usable, key=lambda t: t.number)
        usable = [usable[i * len(usable) // MAX_TRIALS] for i in range(MAX_TRIALS)]
    # The penalty reads only the lowest and highest complete loss: passed those two, not
    # every loss once per diverged trial (O(diverged x complete) at thousands of trials).
    extremes = (min(complete), max(complete))
    frozen = []
    for t in usable:
        value = t.value
        if value is None or not math.isfinite(value):
            value = divergence_penalty(extremes, diverged_at_step=t.diverged_at_step, steps=steps)
        params = {name: float(t.params[name]) for name in distributions}
        frozen.append(create_trial(params=params, distributions=distributions, value=value))
    study = optuna.create_study(direction="minimize")
    study.add_trials(frozen)
    raw = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), normalize=True)
    ordered = dict(sorted(((k, float(v)) for k, v in raw.items()), key=lambda kv: -kv[1]))
    return Importances(values=ordered, evaluator=EVALUATOR, n_trials=len(frozen))


def _inside(params: Mapping[str, float], distributions: Mapping[str, BaseDistribution]) -> bool:
    """Whether every tuned setting of `params` is a finite value inside its range (a trial
    stored under another space, or with a setting missing, is left out)."""
    for name, dist in distributions.items():
        value = params.get(name)
        if not isinstance(dist, FloatDistribution) or value is None or not math.isfinite(value):
            return False
        if not dist.low <= value <= dist.high:
            return False
    return True
