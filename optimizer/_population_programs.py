"""The population trainer's programs: pure functions that JAX compiles, one per kind.

- ``init``: ``(hyperparameters {name: [K]}, seeds [S]) -> (LaneState, data_keys [S])``;
- ``chunk``: ``(LaneState, data_keys, step0, total) -> (LaneState, outputs)``, C steps;
- ``validation``: ``params [K, S, ...] -> validation losses [K, S]``.

Everything here is traced; the host-side lifecycle (caching, padding, pruning, results) is in
:mod:`optimizer.population`, whose docstring defines the step numbering and divergence rule
these functions implement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optimizer.tasks.base import Task

__all__ = ["LaneState", "build_chunk", "build_init", "build_validation", "seed_keys"]

Array = jax.Array


class LaneState(NamedTuple):
    """Device state of a population; every leaf has leading axes ``[K, S]``."""

    params: Any
    grads: Any  # gradient at `params` on the next step's batch: the next update's input
    loss: Array  # float32: loss at `params` on that batch; the last finite loss
    opt_state: Any  # inject_hyperparams state: holds each lane's hyperparameters
    frozen: Array  # bool: diverged or pruned; the lane no longer updates
    diverged_at: Array  # int32: the step the lane diverged at, -1 if it did not
    initial_loss: Array  # float32: the loss of step 0
    last_finite_step: Array  # int32: the step `loss` belongs to
    reported_loss: Array  # float32: the chunk loss last reported (step 0: the initial loss)


def seed_keys(seed: int | Array) -> tuple[Array, Array]:
    """``(init_key, data_key)`` of a seed: lane ``(k, s)`` starts from
    ``task.init_params(init_key)`` and trains on ``task.batch(data_key, t)``, so any lane can
    be reproduced outside the trainer."""
    key = jax.random.key(seed)
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def _update_fn() -> optax.GradientTransformation:
    # The values given here are placeholders: inject_hyperparams' update reads every
    # hyperparameter from the state, which holds each lane's own values.
    return optax.inject_hyperparams(optax.contrib.acprop)(learning_rate=0.0)


def _where(mask: Array, a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, y: jnp.where(mask, x, y), a, b)


def build_chunk(
    task: Task, chunk_steps: int, divergence_factor: float | None
) -> Callable[..., tuple[LaneState, dict[str, Array]]]:
    """The chunk program: ``(state, data_keys [S], step0, total) -> (state, outputs)``."""
    tx = _update_fn()
    value_and_grad = jax.value_and_grad(task.loss)

    def lane_chunk(
        lane: LaneState, data_key: Array, step0: Array, total: Array
    ) -> tuple[LaneState, dict[str, Array]]:
        def one_step(lane: LaneState, i: Array) -> tuple[LaneState, tuple[Array, Array]]:
            step = step0 + i + 1
            updates, new_opt = tx.update(lane.grads, lane.opt_state, lane.params)
            new_params = optax.apply_updates(lane.params, updates)
            loss, grads = value_and_grad(new_params, task.batch(data_key, step + 1))
            active = ~lane.frozen & (step <= total)
            ok = jnp.isfinite(loss)
            if divergence_factor is not None:  # a Python constant: static, not traced
                bound = lane.initial_loss + (divergence_factor - 1.0) * jnp.abs(lane.initial_loss)
                ok &= loss <= bound
            good = active & ok
            diverging = active & ~ok
            # Frozen, diverging and past-the-total lanes keep everything but the flags.
            lane = LaneState(
                params=_where(good, new_params, lane.params),
                grads=_where(good, grads, lane.grads),
                loss=jnp.where(good, loss, lane.loss),
                opt_state=_where(good, new_opt, lane.opt_state),
                frozen=lane.frozen | diverging,
                diverged_at=jnp.where(diverging, step, lane.diverged_at),
                initial_loss=lane.initial_loss,
                last_finite_step=jnp.where(good, step, lane.last_finite_step),
                reported_loss=lane.reported_loss,
            )
            return lane, (loss, good)

        lane, (losses, good) = jax.lax.scan(one_step, lane, jnp.arange(chunk_steps))
        n_good = good.sum()
        mean = jnp.where(good, losses, 0.0).sum() / jnp.maximum(n_good, 1)
        # A lane with no good step in this chunk repeats what it reported before.
        lane = lane._replace(reported_loss=jnp.where(n_good > 0, mean, lane.reported_loss))
        return lane, {"losses": losses, "good": good}

    per_seed = jax.vmap(lane_chunk, in_axes=(0, 0, None, None))
    # data_keys are not batched over K: a batch is computed once per seed and shared by
    # every configuration (common random numbers, and K times less batch work).
    per_config = jax.vmap(per_seed, in_axes=(0, None, None, None))

    def chunk(
        state: LaneState, data_keys: Array, step0: Array, total: Array
    ) -> tuple[LaneState, dict[str, Array]]:
        state, out = per_config(state, data_keys, step0, total)
        # [K, S, C] -> [C, K, S]: step-major, like the reports.
        return state, {k: jnp.moveaxis(v, -1, 0) for k, v in out.items()}

    return chunk


def build_init(task: Task, n_configs: int) -> Callable[..., tuple[LaneState, Array]]:
    """The init program: ``(hyperparameters {name: [K]}, seeds [S]) -> (state, data_keys)``."""
    value_and_grad = jax.value_and_grad(task.loss)

    def init(hparams: dict[str, Array], seeds: Array) -> tuple[LaneState, Array]:
        init_keys, data_keys = jax.vmap(seed_keys)(seeds)
        # Per seed, shared by all configurations: parameters, step 0's loss and gradient.
        params_s = jax.vmap(task.init_params)(init_keys)
        loss_s, grads_s = jax.vmap(lambda p, k: value_and_grad(p, task.batch(k, jnp.int32(1))))(
            params_s, data_keys
        )

        def per_config(x: Array) -> Array:
            return jnp.broadcast_to(x, (n_configs, *x.shape))

        params, grads, loss = jax.tree_util.tree_map(per_config, (params_s, grads_s, loss_s))

        def lane_opt(hp: dict[str, Array], p: Any) -> Any:
            return optax.inject_hyperparams(optax.contrib.acprop)(**hp).init(p)

        opt_state = jax.vmap(jax.vmap(lane_opt, in_axes=(None, 0)))(hparams, params)
        bad_start = ~jnp.isfinite(loss)
        state = LaneState(
            params=params,
            grads=grads,
            loss=loss,
            opt_state=opt_state,
            frozen=bad_start,
            diverged_at=jnp.where(bad_start, 0, -1).astype(jnp.int32),
            initial_loss=loss,
            last_finite_step=jnp.zeros(loss.shape, jnp.int32),
            reported_loss=loss,
        )
        return state, data_keys

    return init


def build_validation(task: Task) -> Callable[[Any], Array]:
    return jax.vmap(jax.vmap(task.validation_loss))
