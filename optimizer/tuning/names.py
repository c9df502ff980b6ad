"""The names a job may choose its sampler and pruner by (their Optuna objects:
optimizer/tuning/policy.py). Standard library only, so the API schema and the command line
can name them without importing Optuna."""

from __future__ import annotations

__all__ = ["PRUNERS", "SAMPLERS"]

#: Optuna samplers by job name: TPE (the default), random, Gaussian process (needs PyTorch),
#: CMA-ES, quasi-Monte Carlo.
SAMPLERS: tuple[str, ...] = ("tpe", "random", "gp", "cmaes", "qmc")
#: Optuna pruners by job name.
PRUNERS: tuple[str, ...] = ("none", "median", "successive-halving", "hyperband")
