"""The confirmation stage's verdict: which of the candidates it trained on fresh seeds is the
answer (optimizer/tuning/confirmation.py makes the candidates)."""

from __future__ import annotations

import math

import numpy as np

from optimizer.acprop import OPTAX_DEFAULTS
from optimizer.recommendation._records import TrialOutcome

__all__ = ["CONFIRM_Z", "best_confirmed"]

#: Standard errors by which a confirmation candidate must beat the stage's first candidate
#: (the trials' own answer) on the fresh seeds to replace it (docs/recommendation.md,
#: "Confirmation": chosen on the development suite's tuning split).
CONFIRM_Z = 1.0


def _pooled_seed_sd(
    trials: list[TrialOutcome], states: list[tuple[list[float], int, int]]
) -> float:
    """The pooled within-trial standard deviation of the seeds' losses, over the job's trials
    before the confirmation stage that finished without divergence with two or more seeds."""
    num = dof = 0.0
    for t, (losses, n_div, _) in zip(trials, states, strict=True):
        if t.confirmation or n_div or len(losses) < 2:
            continue
        mean = sum(losses) / len(losses)
        num += sum((v - mean) ** 2 for v in losses)
        dof += len(losses) - 1
    return math.sqrt(num / dof) if dof else 0.0


def best_confirmed(
    trials: list[TrialOutcome], states: list[tuple[list[float], int, int]]
) -> dict[str, float] | None:
    """The configuration the confirmation stage settles on; None without confirmation trials
    (or when every candidate diverged somewhere).

    The stage's first candidate is the answer the trials gave (the lowest-numbered
    confirmation trial). Where no seed of it diverged, it stands unless another candidate
    that never diverged measured a lower mean loss on the same fresh seeds by more than
    ``CONFIRM_Z`` standard errors of that difference (the pooled seed noise of the job's
    trials): two fresh seeds of a task with heavy-tailed seed losses otherwise overrule a
    model fitted to every trial (docs/recommendation.md, "Confirmation"). Where it diverged,
    the candidate that measured best among those that never did is the answer.
    """
    by_config: dict[tuple[tuple[str, float], ...], list[int]] = {}
    for i, t in enumerate(trials):
        by_config.setdefault(tuple(sorted(t.params.items())), []).append(i)
    measured: dict[tuple[tuple[str, float], ...], tuple[float, int]] = {}
    for config, members in by_config.items():
        fresh = [i for i in members if trials[i].confirmation]
        if not fresh or any(states[i][1] or states[i][2] for i in members):
            continue
        losses = [loss for i in fresh for loss in states[i][0]]
        measured[config] = (float(np.mean(losses)), len(losses))
    if not measured:
        return None
    first = min((t for t in trials if t.confirmation), key=lambda t: t.number)
    base = tuple(sorted(first.params.items()))
    best = min(measured, key=lambda c: measured[c][0])
    if base in measured and best != base:
        noise = _pooled_seed_sd(trials, states)
        (at_best, n), (at_base, _) = measured[best], measured[base]
        if at_base - at_best <= CONFIRM_Z * noise * math.sqrt(2.0 / n):
            best = base
    return {**OPTAX_DEFAULTS, **dict(best)}
