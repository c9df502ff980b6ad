"""A task made with the adapter: a small MLP in plain JAX on scikit-learn's wine data.

Use it as ``optimizer.tasks.examples.wine_mlp:make_wine_mlp`` (``acprop-tuner tune`` allows
the module for its own run). The same shape fits any model: an ``init(key)`` and an
``apply(params, x)``, the arrays, a loss name.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_wine  # bundled with scikit-learn: no download

from optimizer.tasks.adapter import FunctionTask, task_from_functions


def make_wine_mlp(width: int = 16, batch_size: int = 32) -> FunctionTask:
    data = load_wine()
    x = (data.data - data.data.mean(0)) / data.data.std(0)  # 178 examples, 13 features
    y = data.target.astype(np.int32)  # 3 classes

    def init(key: jax.Array) -> dict[str, jax.Array]:
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (13, width)) * jnp.sqrt(2 / 13),
            "b1": jnp.zeros(width),
            "w2": jax.random.normal(k2, (width, 3)) * jnp.sqrt(1 / width),
            "b2": jnp.zeros(3),
        }

    def apply(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
        return hidden @ params["w2"] + params["b2"]  # logits

    return task_from_functions(
        init, apply, x, y,
        loss="cross_entropy", batch_size=batch_size, default_steps=150, name="wine-mlp",
        options={"width": width, "batch_size": batch_size},
    )  # fmt: skip
