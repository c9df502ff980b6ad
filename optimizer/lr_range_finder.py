"""The learning-rate range test with fastai's "valley" suggestion, for comparison.

Smith's LR range test (arXiv:1506.01186) as fastai's ``Learner.lr_find`` runs it: train once
while the learning rate grows exponentially,

    lr_i = start_lr * (end_lr / start_lr) ** (i / (num_it - 1)),   i = 0 .. num_it - 1,

record the training loss of every step, smooth it with a debiased exponential moving average

    a_i = beta * a_{i-1} + (1 - beta) * loss_i,   smooth_i = a_i / (1 - beta^(i+1)),

stop once the smoothed loss exceeds 4x its minimum so far (or is not finite), and suggest a
learning rate from the curve. fastai's default suggestion, ``valley``
(fastai/callback/schedule.py), finds the longest strictly decreasing subsequence of the
smoothed losses (after dropping the first tenth and the last 5 points) and returns the
learning rate halfway along it: index ``start + int(len / 3) + int(len / 6)``.

facts.md explains why this is a baseline and not the recommendation: the slow ramp acts as a
warm-up and hides ACProp's fixed-learning-rate blow-up with a small ``eps_root``.

The suggestion rules are pure numpy; :func:`run_range_test` trains with JAX, imported when it
is called, so importing this module does not import jax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

#: A 1-D series of floats: a list or a numpy array.
Series: TypeAlias = Sequence[float] | np.ndarray

__all__ = ["RangeTest", "ramp", "run_range_test", "smooth", "suggest_valley", "valley_index"]

#: fastai's ``AvgSmoothLoss`` factor and ``LRFinder`` divergence threshold.
SMOOTH_BETA = 0.98
STOP_FACTOR = 4.0


def ramp(start_lr: float, end_lr: float, num_it: int) -> np.ndarray:
    """The exponential learning-rate schedule from ``start_lr`` to ``end_lr`` inclusive."""
    if not (0.0 < start_lr < end_lr and math.isfinite(end_lr)) or num_it < 2:
        raise ValueError("need 0 < start_lr < end_lr (finite) and num_it >= 2")
    return start_lr * (end_lr / start_lr) ** (np.arange(num_it) / (num_it - 1))


def smooth(losses: Series, beta: float = SMOOTH_BETA) -> np.ndarray:
    """Debiased exponential moving average (non-finite once any input is non-finite)."""
    out = np.empty(len(losses))
    avg = 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out[i] = avg / (1.0 - beta ** (i + 1))
    return out


def stop_index(smoothed: np.ndarray, factor: float = STOP_FACTOR) -> int:
    """Number of steps fastai keeps: up to, and including, the step that triggered the stop."""
    best = math.inf
    for i, value in enumerate(smoothed):
        if not math.isfinite(value):
            return i
        best = min(best, value)
        if value > factor * best:
            return i + 1
    return len(smoothed)


def valley_index(losses: Series) -> int:
    """fastai's ``valley``: the index halfway along the longest decreasing run of points.

    The "run" is the longest strictly decreasing subsequence (not necessarily contiguous),
    found by the O(n^2) dynamic programme fastai uses, with its tie-breaking: the first
    subsequence end that reaches the longest length wins.
    """
    n = len(losses)
    if n == 0:
        raise ValueError("no losses to suggest from")
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def suggest_valley(lrs: Series, smoothed: Series, num_it: int) -> float:
    """fastai's suggestion from a recorded (and already stopped) range test.

    Args:
      lrs: the learning rate of each recorded step.
      smoothed: the smoothed loss of each recorded step.
      num_it: the planned number of steps (fastai trims ``num_it // 10`` from the start).

    Returns:
      The suggested learning rate.
    """
    lr = np.asarray(lrs, float)[num_it // 10 : -5]
    loss = np.asarray(smoothed, float)[num_it // 10 : -5]
    bad = np.flatnonzero(~np.isfinite(loss))
    if bad.size:  # fastai drops everything from the first NaN on
        lr, loss = lr[: bad[0]], loss[: bad[0]]
    if lr.size == 0:
        raise ValueError("the range test stopped before it recorded enough steps")
    return float(lr[valley_index(loss.tolist())])


@dataclass(frozen=True)
class RangeTest:
    """A recorded range test: per kept step, its learning rate, raw and smoothed loss."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    num_it: int
    suggestion: float


def run_range_test(
    task: Any,
    *,
    start_lr: float = 1e-5,
    end_lr: float = 1.0,
    num_it: int = 100,
    seed: int = 0,
    hyperparameters: Mapping[str, float] | None = None,
) -> RangeTest:
    """Runs the range test on ``task`` with ACProp and returns fastai's valley suggestion.

    Args:
      task: an :class:`optimizer.tasks.Task`.
      start_lr, end_lr, num_it: the ramp (fastai's defaults are 1e-7, 10, 100; this project
        searches [1e-5, 1], so the ramp covers that range).
      seed: parameters and batches come from :func:`optimizer.population.seed_keys`.
      hyperparameters: the other ACProp settings (optax's defaults where not given).

    Returns:
      The recorded test, cut where fastai would stop it, and its suggestion.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from optimizer.population import seed_keys

    lrs = ramp(start_lr, end_lr, num_it)
    tx = optax.inject_hyperparams(optax.contrib.acprop)(
        learning_rate=float(lrs[0]), **dict(hyperparameters or {})
    )
    init_key, data_key = seed_keys(seed)
    value_and_grad = jax.value_and_grad(task.loss)

    @jax.jit
    def run(params: Any, lr_schedule: jax.Array) -> jax.Array:
        def step(carry: Any, inp: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            params, opt_state = carry
            i, lr = inp
            # fastai sets step i's learning rate before the batch, records the loss of the
            # current parameters on that batch, then steps.
            hyperparams = {**opt_state.hyperparams, "learning_rate": lr.astype(jnp.float32)}
            opt_state = opt_state._replace(hyperparams=hyperparams)
            loss, grads = value_and_grad(params, task.batch(data_key, i + 1))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        _, losses = jax.lax.scan(step, (params, tx.init(params)), (jnp.arange(num_it), lr_schedule))
        return losses

    params = task.init_params(init_key)
    losses = np.asarray(run(params, jnp.asarray(lrs, jnp.float32)), float)
    smoothed = smooth(losses)
    keep = stop_index(smoothed)
    return RangeTest(
        lrs=lrs[:keep],
        losses=losses[:keep],
        smoothed=smoothed[:keep],
        num_it=num_it,
        suggestion=suggest_valley(lrs[:keep], smoothed[:keep], num_it),
    )
