"""Reference optimizers: what a user might run instead of tuning ACProp, trained the same way.

Adam (a learning rate), AdamW, and the learning-rate-free ``optax.contrib`` optimizers at
their defaults: Prodigy, D-Adaptation AdamW, and schedule-free AdamW (evaluated, as its authors
intend, at its averaged parameters: ``schedule_free_eval_params``). Each trains on a task's
seeds exactly as a trial does (the same initial parameters and batches of each seed:
``optimizer._population_programs.seed_keys``), with divergence detected the same way (a
non-finite loss, or one above ``divergence_factor`` times the initial), in one compiled
program: ``jit(vmap over seeds(lax.scan over steps))``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optimizer._population_programs import seed_keys
from optimizer.tasks.base import Task

__all__ = ["REFERENCES", "ReferenceResult", "make_reference", "train_reference"]


def _adam(settings: Mapping[str, float]) -> optax.GradientTransformation:
    return optax.adam(learning_rate=settings.get("learning_rate", 1e-3))


def _adamw(settings: Mapping[str, float]) -> optax.GradientTransformation:
    return optax.adamw(
        learning_rate=settings.get("learning_rate", 1e-3),
        weight_decay=settings.get("weight_decay", 1e-4),
    )


#: name -> (factory from its settings, the settings it takes with their defaults).
REFERENCES: dict[str, tuple[Callable[[Mapping[str, float]], Any], Mapping[str, float]]] = {
    "adam": (_adam, {"learning_rate": 1e-3}),
    "adamw": (_adamw, {"learning_rate": 1e-3, "weight_decay": 1e-4}),
    "prodigy": (lambda s: optax.contrib.prodigy(), {}),
    "dadapt_adamw": (lambda s: optax.contrib.dadapt_adamw(), {}),
    "schedule_free_adamw": (lambda s: optax.contrib.schedule_free_adamw(), {}),
}


def make_reference(name: str, settings: Mapping[str, float] | None = None) -> Any:
    """The optax transformation of reference ``name`` with ``settings`` over its defaults."""
    factory, defaults = REFERENCES[name]
    unknown = sorted(set(settings or {}) - set(defaults))
    if unknown:
        raise ValueError(f"{name} takes {sorted(defaults) or 'no settings'}, not {unknown[0]!r}")
    return factory({**defaults, **(settings or {})})


@dataclass(frozen=True)
class ReferenceResult:
    """Per seed: the validation loss at the end (of the last good parameters for a seed that
    diverged), the step it diverged at (-1: it did not), and the training losses."""

    validation_loss: np.ndarray  # [S]
    diverged_at: np.ndarray  # [S]
    losses: np.ndarray  # [steps, S]: the loss of step t, as a trial reports it


def train_reference(
    task: Task,
    name: str,
    seeds: Sequence[int],
    steps: int,
    *,
    settings: Mapping[str, float] | None = None,
    divergence_factor: float = 100.0,
) -> ReferenceResult:
    """Train reference ``name`` on ``task`` from each of ``seeds`` for ``steps`` steps."""
    tx = make_reference(name, settings)
    schedule_free = name == "schedule_free_adamw"
    value_and_grad = jax.value_and_grad(task.loss)

    def one_seed(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        init_key, data_key = seed_keys(seed)
        params = task.init_params(init_key)
        opt_state = tx.init(params)
        loss0, grads = value_and_grad(params, task.batch(data_key, jnp.int32(1)))
        bound = loss0 + (divergence_factor - 1.0) * jnp.abs(loss0)

        def step(carry: Any, t: jax.Array) -> tuple[Any, jax.Array]:
            params, opt_state, grads, frozen, diverged_at = carry
            updates, new_state = tx.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            loss, new_grads = value_and_grad(new_params, task.batch(data_key, t + 1))
            bad = ~frozen & ~(jnp.isfinite(loss) & (loss <= bound))
            keep = frozen | bad

            def pick(old: Any, new: Any) -> Any:
                return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), old, new)

            carry = (
                pick(params, new_params),
                pick(opt_state, new_state),
                pick(grads, new_grads),
                frozen | bad,
                jnp.where(bad, t, diverged_at),
            )
            return carry, loss

        init = (params, opt_state, grads, jnp.array(False), jnp.int32(-1))
        (params, opt_state, _, _, diverged_at), losses = jax.lax.scan(
            step, init, jnp.arange(1, steps + 1, dtype=jnp.int32)
        )
        if schedule_free:
            params = optax.contrib.schedule_free_eval_params(opt_state, params)
        return task.validation_loss(params), diverged_at, losses

    run = jax.jit(jax.vmap(one_seed))
    val, diverged_at, losses = run(jnp.asarray(list(seeds), jnp.int32))
    return ReferenceResult(
        validation_loss=np.asarray(val, np.float64),
        diverged_at=np.asarray(diverged_at),
        losses=np.asarray(losses, np.float64).T,
    )
