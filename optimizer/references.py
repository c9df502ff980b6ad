"""Reference optimizers: what a user might run instead of tuning ACProp, trained the same way.

Adam, AdamW, and the learning-rate-free ``optax.contrib`` optimizers Prodigy, D-Adaptation
AdamW and schedule-free AdamW (evaluated, as its authors intend, at its averaged parameters:
``schedule_free_eval_params``), with the settings of :mod:`optimizer.baselines` (optax's
defaults unless a job names others); and ACProp itself at fixed settings (a job's *check* run:
ACProp at its recommendation on the baselines' seeds). Each trains on a task's seeds exactly
as a trial does (the same initial parameters and batches of each seed:
``optimizer._population_programs.seed_keys``; step ``t``'s loss is that of the parameters the
``t``-th update produced, on the next batch), with divergence detected the same way (a
non-finite loss, or one above ``divergence_factor`` times the initial: the lane keeps its last
good parameters and stops), in one compiled program: ``jit(vmap over seeds(lax.scan over
steps))``, cached per (task, optimizer, settings, seeds, steps) in the process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optimizer import compile_cache
from optimizer._population_programs import seed_keys
from optimizer.baselines import CHECK_OPTIMIZER, Baseline
from optimizer.config import ACPropConfig
from optimizer.tasks.base import Task

__all__ = ["ReferenceResult", "make_reference", "resolve_settings", "train_reference"]


def resolve_settings(name: str, settings: Mapping[str, float] | None = None) -> dict[str, float]:
    """``settings`` over the defaults of reference ``name``, validated.

    Raises:
        ValueError: an unknown optimizer or setting, or a value out of range.
    """
    if name == CHECK_OPTIMIZER:
        return ACPropConfig.from_dict(dict(settings or {})).to_dict()
    return dict(Baseline(name, dict(settings or {})).settings)


def make_reference(name: str, settings: Mapping[str, float] | None = None) -> Any:
    """The optax transformation of reference ``name`` with ``settings`` over its defaults."""
    s = resolve_settings(name, settings)
    if name == "adam":
        return optax.adam(s["learning_rate"], b1=s["b1"], b2=s["b2"], eps=s["eps"])
    if name == "adamw":
        return optax.adamw(
            s["learning_rate"], b1=s["b1"], b2=s["b2"], eps=s["eps"], weight_decay=s["weight_decay"]
        )
    if name == "prodigy":
        return optax.contrib.prodigy(s["learning_rate"], weight_decay=s["weight_decay"])
    if name == "dadapt_adamw":
        return optax.contrib.dadapt_adamw(s["learning_rate"], weight_decay=s["weight_decay"])
    if name == "schedule_free_adamw":
        return optax.contrib.schedule_free_adamw(
            s["learning_rate"],
            warmup_steps=int(s["warmup_steps"]) or None,  # optax: None means no warm-up
            b1=s["b1"],
            weight_decay=s["weight_decay"],
        )
    return optax.contrib.acprop(**s)  # the check: ACProp at fixed settings


@dataclass(frozen=True)
class ReferenceResult:
    """Per seed: the validation loss at the end (of the last good parameters for a seed that
    diverged), the training loss of those parameters, the step it diverged at (-1: it did
    not; 0: its initial loss was not finite), and the training losses."""

    validation_loss: np.ndarray  # [S]
    final_loss: np.ndarray  # [S]: the loss of the final (last good) parameters
    diverged_at: np.ndarray  # [S]
    losses: np.ndarray  # [steps, S]: the loss of step t, as a trial reports it
    compile_s: float = 0.0  # compile time of this call (0 when the program was cached)
    wall_s: float = 0.0  # this call's wall time, compilation included


def _build(task: Task, name: str, settings: Mapping[str, float], steps: int, factor: float) -> Any:
    tx = make_reference(name, settings)
    schedule_free = name == "schedule_free_adamw"
    value_and_grad = jax.value_and_grad(task.loss)

    def one_seed(seed: jax.Array) -> tuple[jax.Array, ...]:
        init_key, data_key = seed_keys(seed)
        params = task.init_params(init_key)
        opt_state = tx.init(params)
        loss0, grads = value_and_grad(params, task.batch(data_key, jnp.int32(1)))
        bound = loss0 + (factor - 1.0) * jnp.abs(loss0)
        bad_start = ~jnp.isfinite(loss0)

        def step(carry: Any, t: jax.Array) -> tuple[Any, jax.Array]:
            params, opt_state, grads, last, frozen, diverged_at = carry
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
                jnp.where(keep, last, loss),
                frozen | bad,
                jnp.where(bad, t, diverged_at),
            )
            return carry, loss

        start = jnp.where(bad_start, 0, -1).astype(jnp.int32)
        init = (params, opt_state, grads, loss0, bad_start, start)
        (params, opt_state, _, last, _, diverged_at), losses = jax.lax.scan(
            step, init, jnp.arange(1, steps + 1, dtype=jnp.int32)
        )
        if schedule_free:
            params = optax.contrib.schedule_free_eval_params(opt_state, params)
        return task.validation_loss(params), last, diverged_at, losses

    return jax.jit(jax.vmap(one_seed))


def train_reference(
    task: Task,
    name: str,
    seeds: Sequence[int],
    steps: int,
    *,
    settings: Mapping[str, float] | None = None,
    divergence_factor: float = 100.0,
    cache: compile_cache.ProgramCache | None = None,
) -> ReferenceResult:
    """Train reference ``name`` on ``task`` from each of ``seeds`` for ``steps`` steps.

    Raises:
        ValueError: an unknown optimizer or setting, a value out of range, no seeds, or a
            step count below 1.
    """
    if not seeds or any(not 0 <= int(s) < 2**31 for s in seeds):
        raise ValueError("seeds must be one or more integers in [0, 2**31)")
    if not 1 <= steps < 2**31:
        raise ValueError(f"steps must be an integer in [1, 2**31), got {steps}")
    resolved = resolve_settings(name, settings)
    started = time.perf_counter()
    seeds_arr = np.asarray(list(seeds), np.uint32)  # as the population trainer passes them
    config: Any = jax.config
    key = (
        "reference",
        f"{type(task).__module__}.{type(task).__qualname__}",
        task.meta.name,
        compile_cache.options_key(task.meta.options),
        name,
        tuple(sorted(resolved.items())),
        len(seeds_arr),
        steps,
        divergence_factor,
        config.jax_default_matmul_precision,
        config.jax_enable_x64,
    )
    compile_s = 0.0

    def compile_now() -> Any:
        nonlocal compile_s
        begin = time.perf_counter()
        jitted = _build(task, name, resolved, steps, divergence_factor)
        compiled = jitted.lower(seeds_arr).compile()
        compile_s = time.perf_counter() - begin
        return compiled

    program = (compile_cache.PROGRAMS if cache is None else cache).get(key, compile_now)
    val, last, diverged_at, losses = program(seeds_arr)

    def finite_or_nan(a: Any) -> np.ndarray:
        a = np.asarray(a, np.float64)
        return np.where(np.isfinite(a), a, np.nan)

    return ReferenceResult(
        validation_loss=finite_or_nan(val),
        final_loss=finite_or_nan(last),
        diverged_at=np.asarray(diverged_at, np.int64),
        losses=np.asarray(losses, np.float64).T,
        compile_s=compile_s,
        wall_s=time.perf_counter() - started,
    )
