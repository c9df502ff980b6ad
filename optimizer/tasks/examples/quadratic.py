"""A custom task: least squares on synthetic data, ``package.module:factory`` style.

Use it as ``optimizer.tasks.examples.quadratic:make_quadratic`` or register the factory in
the ``acprop_tuner.tasks`` entry-point group of your own distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from optimizer.tasks import TaskMeta


@dataclass(frozen=True, eq=False)
class Quadratic:
    meta: TaskMeta
    x: jax.Array  # [n, dim] inputs, fixed for the task
    y: jax.Array  # [n] targets
    batch_size: int

    def init_params(self, key: jax.Array) -> jax.Array:
        return 0.1 * jax.random.normal(key, (self.x.shape[1],))

    def batch(self, key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
        # Pure function of (key, step): the same batches for every configuration of a seed.
        idx = jax.random.randint(jax.random.fold_in(key, step), (self.batch_size,), 0, len(self.y))
        return self.x[idx], self.y[idx]

    def loss(self, params: jax.Array, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        x, y = batch
        return jnp.mean((x @ params - y) ** 2)

    def validation_loss(self, params: jax.Array) -> jax.Array:
        return self.loss(params, (self.x, self.y))


def make_quadratic(dim: int = 8, n: int = 256, batch_size: int = 32) -> Quadratic:
    """The factory: called as ``make_quadratic(**options)`` by ``load_task``."""
    if not (1 <= dim <= 1024 and 1 <= batch_size <= n <= 100_000):
        raise ValueError("need 1 <= dim <= 1024 and 1 <= batch_size <= n <= 100000")
    kx, kw, kn = jax.random.split(jax.random.key(0), 3)  # the data is part of the task
    x = jax.random.normal(kx, (n, dim))
    y = x @ jax.random.normal(kw, (dim,)) + 0.1 * jax.random.normal(kn, (n,))
    meta = TaskMeta(
        name="quadratic",
        n_params=dim,
        default_steps=200,
        default_batch_size=batch_size,
        options={"dim": dim, "n": n, "batch_size": batch_size},
    )
    return Quadratic(meta=meta, x=x, y=y, batch_size=batch_size)
