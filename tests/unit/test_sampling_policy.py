"""The service's sampling policy after a warm start, on a synthetic problem (no jax, no service).

The loss is ``1 + 0.1 (log10 lr - log10 3e-3)^2`` and training diverges above an edge that
moves with ``eps_root``, from 1e-4 at ``eps_root = 1e-16`` to 3e-2 above 1e-8 (the shape
facts.md reports for ACProp). A job over the default space starts with the service's
warm-start sweep; its sampler (`optimizer.tuning.policy.build_sampler`) then proposes trials in
populations of 4, with the population still running pending, and a diverged trial told as
the service's finite penalty (`optimizer.tuning.outcome.divergence_penalty`).
"""

from __future__ import annotations

import math

import numpy as np
import optuna

from optimizer.job_spec import JobSpec
from optimizer.space import SearchSpace
from optimizer.tuning.outcome import divergence_penalty
from optimizer.tuning.policy import build_sampler, search_space
from optimizer.warm_start import warm_start_configs

optuna.logging.set_verbosity(optuna.logging.WARNING)

BEST_LOG_LR = math.log10(3e-3)
N_TRIALS, POPULATION, STEPS = 64, 4, 100


def edge_log(log_eps_root: float) -> float:
    return float(np.interp(log_eps_root, [-16.0, -8.0], [-4.0, math.log10(3e-2)]))


def run_job(sampler: optuna.samplers.BaseSampler, spec: JobSpec) -> tuple[float, float]:
    """Share of sampler trials (after the sweep) near the optimum and share that diverged."""
    space = search_space(spec)
    study = optuna.create_study(sampler=sampler)
    finished: list[float] = []

    def tell(trial: optuna.trial.Trial) -> bool:
        u = math.log10(trial.params["learning_rate"])
        if u > edge_log(math.log10(trial.params["eps_root"])):
            value = divergence_penalty(finished, diverged_at_step=3, steps=STEPS)
            study.tell(trial, value)
            return True
        finished.append(1.0 + 0.1 * (u - BEST_LOG_LR) ** 2)
        study.tell(trial, finished[-1])
        return False

    sweep = warm_start_configs(SearchSpace(), N_TRIALS)
    for config in sweep:
        study.enqueue_trial({name: config[name] for name in space.distributions})
    for trial in [study.ask(space.distributions) for _ in sweep]:
        tell(trial)
    near = diverged = asked = 0
    while len(study.trials) < N_TRIALS:
        population = [study.ask(space.distributions) for _ in range(POPULATION)]
        for trial in population:
            blew_up = tell(trial)
            asked += 1
            diverged += blew_up
            near += (
                not blew_up and abs(math.log10(trial.params["learning_rate"]) - BEST_LOG_LR) <= 1
            )
    return near / asked, diverged / asked


def test_after_the_warm_start_the_sampler_stays_near_the_good_region() -> None:
    spec = JobSpec.for_task("rosenbrock", n_trials=N_TRIALS, sampler="tpe", warm_start=True)
    assert len(spec.warm_start_configs) == len(warm_start_configs(SearchSpace(), N_TRIALS)) > 0
    policy = np.array([run_job(build_sampler(spec, seed=s), spec) for s in range(4)])
    random = np.array([run_job(optuna.samplers.RandomSampler(seed=s), spec) for s in range(4)])
    near, diverged = policy.mean(axis=0)
    # Most trials within one decade of the optimum, fewer diverged than random sampling.
    assert near > 0.5
    assert near > 2 * random[:, 0].mean()
    assert diverged < random[:, 1].mean() - 0.1


def test_the_warm_started_tpe_skips_its_random_startup() -> None:
    cold_spec = JobSpec.for_task("rosenbrock", n_trials=N_TRIALS, warm_start=False)
    spec = JobSpec.for_task("rosenbrock", n_trials=N_TRIALS, warm_start=True)
    cold = build_sampler(cold_spec, seed=0)
    warm = build_sampler(spec, seed=0)
    assert isinstance(warm, optuna.samplers.TPESampler)
    assert isinstance(cold, optuna.samplers.TPESampler)
    assert warm._n_startup_trials == 0 < cold._n_startup_trials
    # Seeded: the same job samples the same configurations.
    again = build_sampler(spec, seed=0)
    assert run_job(warm, spec) == run_job(again, spec)
