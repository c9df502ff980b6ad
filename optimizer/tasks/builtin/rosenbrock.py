"""``rosenbrock``: the 2-D Rosenbrock function from (0, 0), full batch.

This is the reproducer of optax issue 1132: with optax's default ``eps_root=1e-16`` ACProp
at learning rate 1e-4 goes from loss 1 to about 8e3 within three steps, because the second
coordinate's gradient is exactly zero at the start and its denominator collapses to
``sqrt(eps_root / (1 - b2))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from optimizer.tasks.base import TaskMeta
from optimizer.tasks.registry import builtin_default_steps

Array = jax.Array


@dataclass(frozen=True)
class Rosenbrock:
    """``(a - x)^2 + b (y - x^2)^2``; there is no data, so a batch is empty."""

    meta: TaskMeta
    a: float
    b: float

    def init_params(self, key: Array) -> Array:
        del key  # the reproducer starts at the origin for every seed
        return jnp.zeros((2,), jnp.float32)

    def batch(self, key: Array, step: Array) -> tuple[()]:
        del key, step
        return ()

    def loss(self, params: Array, batch: tuple[()]) -> Array:
        del batch
        x, y = params[0], params[1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def validation_loss(self, params: Array) -> Array:
        return self.loss(params, ())


def make_rosenbrock(a: float = 1.0, b: float = 100.0) -> Rosenbrock:
    meta = TaskMeta(
        name="rosenbrock",
        n_params=2,
        default_steps=builtin_default_steps("rosenbrock"),
        default_batch_size=1,
        options={"a": a, "b": b},
    )
    return Rosenbrock(meta=meta, a=float(a), b=float(b))
