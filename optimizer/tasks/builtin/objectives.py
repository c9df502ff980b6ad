"""Non-neural objectives for the development suite: a noisy ill-conditioned quadratic.

``0.5 * sum_i lambda_i (x_i - xi_i)^2`` with eigenvalues ``lambda_i`` log-spaced over
``[1, condition]``, from ``x = 1`` (every seed), where ``xi`` is fresh Gaussian noise each step
(``noise`` its scale: a stochastic gradient) and the validation loss is the noise-free
``0.5 * sum_i lambda_i x_i^2``. Adaptive methods see very different curvatures per
coordinate, which is what their preconditioning is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from optimizer.tasks.base import TaskMeta

__all__ = ["NoisyQuadratic", "make_noisy_quadratic"]

Array = jax.Array


@dataclass(frozen=True, eq=False)
class NoisyQuadratic:
    meta: TaskMeta
    curvature: Array
    noise: float

    def init_params(self, key: Array) -> Array:
        del key  # every seed starts at the same point; the seeds differ in their noise
        return jnp.ones_like(self.curvature)

    def batch(self, key: Array, step: Array) -> Array:
        return self.noise * jax.random.normal(jax.random.fold_in(key, step), self.curvature.shape)

    def loss(self, params: Array, batch: Array) -> Array:
        return 0.5 * jnp.sum(self.curvature * (params - batch) ** 2)

    def validation_loss(self, params: Array) -> Array:
        return 0.5 * jnp.sum(self.curvature * params**2)


def make_noisy_quadratic(
    name: str, *, dim: int = 32, condition: float = 1e3, noise: float = 0.1, steps: int = 300
) -> NoisyQuadratic:
    meta = TaskMeta(
        name=name,
        n_params=dim,
        default_steps=steps,
        default_batch_size=1,
        options={"dim": dim, "condition": condition, "noise": noise},
    )
    curvature = jnp.logspace(0.0, jnp.log10(condition), dim, dtype=jnp.float32)
    return NoisyQuadratic(meta=meta, curvature=curvature, noise=float(noise))
