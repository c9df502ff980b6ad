"""The population trainer: K ACProp configurations x S seeds in one compiled program.

A *population* is a ``[K, S]`` grid of *lanes*; lane ``(k, s)`` trains configuration ``k``
from seed ``s``. Every lane of a seed starts from the same parameters and sees the same
batches (common random numbers), so configurations are compared on equal terms.

Training runs in *chunks* of ``C`` steps. One chunk is one jitted program,
``vmap over K (vmap over S (lax.scan over C steps))``, so the host synchronises only at chunk
boundaries (to report losses and to prune). The hyperparameters are traced values in the
optimizer state (``optax.inject_hyperparams``), and the step counter and the total number of
steps are traced too, so one compiled program serves every population of the same
``(task, options, K, S, C)``: new hyperparameter values, a total that is not a multiple of
``C``, and pruning between chunks compile nothing.

Step numbering: step ``t`` (1-based) is the ``t``-th update, and *the loss of step t* is the
training loss of the parameters that update produced, ``loss(params_t, batch_{t+1})``: it is
evaluated on the batch the next update uses, so it costs no extra forward pass (its gradient
is that update's gradient). Step 0's loss is the initial loss, ``loss(params_0, batch_1)``,
computed by :meth:`PopulationTrainer.start`. A run of ``T`` steps reports steps ``1 .. T``.

Divergence is detected inside the program at every step: the loss of step ``t`` is
non-finite, or exceeds ``initial + (divergence_factor - 1) * |initial|`` (``divergence_factor``
times the initial loss when it is positive). Then update ``t`` is the one that blew up: the lane
keeps ``params_{t-1}`` and is frozen from step ``t`` on (masked with ``jnp.where``; no Python
branch on traced values), and ``diverged_at = t``. So a diverged lane reports the loss of its
last good parameters (its last finite loss, step ``t - 1``) and their validation loss. A lane
whose initial loss is already non-finite is ``diverged_at = 0``. Lanes pruned by the caller are
frozen the same way, between chunks, with :meth:`PopulationTrainer.freeze`.

Typical use::

    trainer = PopulationTrainer(load_task("mlp-digits", {}), n_configs=8, n_seeds=2,
                                chunk_steps=15)
    pop = trainer.start(configs, seeds=[0, 1], total_steps=300)
    while not pop.done:
        chunk = trainer.advance(pop)          # chunk.loss: [K, S] mean loss of the chunk
        trainer.freeze(pop, my_pruner(chunk))  # optional; [K] or [K, S] bool
    final = trainer.finish(pop)               # final/validation losses, diverged_at
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from optimizer import compile_cache
from optimizer._population_programs import (
    build_chunk,
    build_init,
    build_validation,
    seed_keys,
)
from optimizer._population_results import ChunkResult, FinalResult, Population
from optimizer.acprop import HYPERPARAMETERS
from optimizer.config import ACPropConfig
from optimizer.tasks.base import Task

__all__ = ["ChunkResult", "FinalResult", "Population", "PopulationTrainer", "seed_keys"]


class PopulationTrainer:
    """Trains ``n_configs`` x ``n_seeds`` lanes of ``task`` in chunks of ``chunk_steps``.

    Args:
        task: the task (see :mod:`optimizer.tasks`).
        n_configs: K, the number of configurations trained together (static shape).
        n_seeds: S, the number of seeds per configuration (static shape).
        chunk_steps: C, the steps per compiled chunk; the host sees losses every C steps.
        divergence_factor: a lane diverges when its loss exceeds this multiple of its
            initial loss (see the module docstring); ``None`` detects non-finite losses only.
        cache: the program cache (the process-wide one by default).
        persistent_cache: turn on JAX's persistent compilation cache
            (:func:`optimizer.compile_cache.enable_persistent_cache`).
    """

    def __init__(
        self,
        task: Task,
        *,
        n_configs: int,
        n_seeds: int = 1,
        chunk_steps: int = 20,
        divergence_factor: float | None = 100.0,
        cache: compile_cache.ProgramCache | None = None,
        persistent_cache: bool = True,
    ) -> None:
        for name, value in (("n_configs", n_configs), ("n_seeds", n_seeds)):
            if not 1 <= value <= 4096:
                raise ValueError(f"{name} must be an integer in [1, 4096], got {value}")
        if not 1 <= chunk_steps <= 100_000:
            raise ValueError(f"chunk_steps must be an integer in [1, 100000], got {chunk_steps}")
        if divergence_factor is not None and not (
            math.isfinite(divergence_factor) and divergence_factor > 1
        ):
            raise ValueError(
                f"divergence_factor must be a finite number > 1 or None, got {divergence_factor}"
            )
        if persistent_cache:
            compile_cache.enable_persistent_cache()
        self.task = task
        self.n_configs = n_configs
        self.n_seeds = n_seeds
        self.chunk_steps = chunk_steps
        self.divergence_factor = divergence_factor
        self.cache = compile_cache.PROGRAMS if cache is None else cache
        self.compile_s = 0.0  # compile time this trainer spent on cache misses
        # The task's class is part of the key, so two custom tasks that share a meta name
        # cannot share a program.
        self._key = (
            f"{type(task).__module__}.{type(task).__qualname__}",
            task.meta.name,
            compile_cache.options_key(task.meta.options),
            n_configs,
            n_seeds,
            chunk_steps,
            divergence_factor,
        )

    # -- programs -------------------------------------------------------------------------

    def _program(self, kind: str, build: Callable[[], Callable[..., Any]], *args: Any) -> Any:
        """The compiled ``kind`` program for this trainer's key, compiled ahead of time.

        Ahead-of-time compilation measures compile time apart from run time, and a compiled
        executable refuses arguments of other shapes instead of silently recompiling.
        """

        def compile_now() -> Callable[..., Any]:
            start = time.perf_counter()
            compiled = jax.jit(build()).lower(*args).compile()
            self.compile_s += time.perf_counter() - start
            return compiled  # type: ignore[no-any-return]

        # JAX settings that change the compiled program are part of the key, as they are of
        # jax.jit's own cache: a program compiled under TF32 matmuls must not serve a caller
        # that asked for `jax.default_matmul_precision("highest")`.
        config: Any = jax.config  # flags are dynamic attributes, unknown to type checkers
        settings = (config.jax_default_matmul_precision, config.jax_enable_x64)
        return self.cache.get((kind, *self._key, *settings), compile_now)

    # -- the population lifecycle ---------------------------------------------------------

    def start(
        self, configs: Sequence[ACPropConfig], seeds: Sequence[int], total_steps: int
    ) -> Population:
        """A new population at step 0: parameters from each seed, optimizer state per lane."""
        if not 1 <= len(configs) <= self.n_configs:
            raise ValueError(f"need 1 to {self.n_configs} configurations, got {len(configs)}")
        if len(seeds) != self.n_seeds:
            raise ValueError(f"need exactly {self.n_seeds} seeds, got {len(seeds)}")
        if any(not 0 <= int(s) < 2**31 for s in seeds):
            raise ValueError("seeds must be integers in [0, 2**31)")
        if not 1 <= total_steps < 2**31:
            raise ValueError(f"total_steps must be an integer in [1, 2**31), got {total_steps}")
        padded = [*configs] + [configs[-1]] * (self.n_configs - len(configs))
        # numpy in, device_put: building inputs must not run (and compile) jnp operations.
        hparams = {
            name: np.asarray([getattr(c, name) for c in padded], np.float32)
            for name in HYPERPARAMETERS
        }
        seeds_arr = np.asarray(seeds, np.uint32)
        init = self._program(
            "init", lambda: build_init(self.task, self.n_configs), hparams, seeds_arr
        )
        state, data_keys = init(hparams, seeds_arr)
        pruned = np.zeros((self.n_configs, self.n_seeds), bool)
        pop = Population(
            state=state,
            data_keys=data_keys,
            configs=tuple(configs),
            seeds=tuple(int(s) for s in seeds),
            total_steps=int(total_steps),
            pruned=pruned,
        )
        if len(configs) < self.n_configs:
            padding = np.zeros_like(pruned)
            padding[len(configs) :] = True
            self._set_frozen(pop, padding)
        return pop

    def advance(self, pop: Population) -> ChunkResult:
        """Run one chunk (``chunk_steps`` steps, fewer live ones at the end) and report it."""
        if pop.done:
            raise ValueError(f"the population has finished its {pop.total_steps} steps")
        started = time.perf_counter()
        step0, total = np.int32(pop.step), np.int32(pop.total_steps)
        chunk = self._program(
            "chunk",
            lambda: build_chunk(self.task, self.chunk_steps, self.divergence_factor),
            pop.state,
            pop.data_keys,
            step0,
            total,
        )
        pop.state, out = chunk(pop.state, pop.data_keys, step0, total)
        pop.step = min(pop.step + self.chunk_steps, pop.total_steps)
        n = pop.n_configs
        state = pop.state
        result = ChunkResult(
            step=pop.step,
            loss=np.asarray(state.reported_loss)[:n],
            step_losses=np.asarray(out["losses"])[:, :n],
            step_good=np.asarray(out["good"])[:, :n],
            diverged_at=np.asarray(state.diverged_at)[:n],
            frozen=np.asarray(state.frozen)[:n],
        )
        pop.wall_s += time.perf_counter() - started
        return result

    def freeze(self, pop: Population, lanes: np.ndarray | Sequence[bool]) -> None:
        """Stop training the lanes where ``lanes`` is true (pruned), from the next step on.

        ``lanes`` is ``[K]`` (whole configurations) or ``[K, S]``, over the configurations
        given to :meth:`start`. Nothing is compiled: the mask is data.
        """
        mask = np.asarray(lanes, bool)
        if mask.ndim == 1:
            mask = np.repeat(mask[:, None], self.n_seeds, axis=1)
        if mask.shape != (pop.n_configs, self.n_seeds):
            raise ValueError(
                f"lanes must have shape ({pop.n_configs},) or ({pop.n_configs}, {self.n_seeds})"
            )
        full = np.zeros((self.n_configs, self.n_seeds), bool)
        full[: pop.n_configs] = mask
        diverged = np.asarray(pop.state.diverged_at) >= 0
        pop.pruned |= full & ~diverged
        self._set_frozen(pop, full)

    def _set_frozen(self, pop: Population, mask: np.ndarray) -> None:
        # numpy, then device_put: a host-side update runs no XLA program.
        frozen = np.asarray(pop.state.frozen) | mask
        pop.state = pop.state._replace(frozen=jax.device_put(frozen))

    def finish(self, pop: Population) -> FinalResult:
        """Final and validation losses of every lane (call when done, or to stop early)."""
        started = time.perf_counter()
        validate = self._program(
            "validation", lambda: build_validation(self.task), pop.state.params
        )
        validation = np.asarray(validate(pop.state.params))
        pop.wall_s += time.perf_counter() - started
        n = pop.n_configs
        state = pop.state
        return FinalResult.build(
            steps=pop.step,
            initial_loss=np.asarray(state.initial_loss)[:n],
            reported_loss=np.asarray(state.reported_loss)[:n],
            last_finite_loss=np.asarray(state.loss)[:n],
            last_finite_step=np.asarray(state.last_finite_step)[:n],
            validation_loss=validation[:n],
            diverged_at=np.asarray(state.diverged_at)[:n],
            pruned=pop.pruned[:n],
            wall_s=pop.wall_s,
        )

    def train(
        self,
        configs: Sequence[ACPropConfig],
        seeds: Sequence[int],
        total_steps: int,
        on_chunk: Callable[[ChunkResult], np.ndarray | None] | None = None,
    ) -> FinalResult:
        """Start, advance to the end, finish. ``on_chunk`` may return a mask of lanes to prune."""
        pop = self.start(configs, seeds, total_steps)
        while not pop.done:
            chunk = self.advance(pop)
            if on_chunk is not None:
                prune = on_chunk(chunk)
                if prune is not None:
                    self.freeze(pop, prune)
        return self.finish(pop)
