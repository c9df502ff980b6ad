"""A task made with the adapter from an Equinox model (needs ``pip install equinox``, the
``examples`` extra): an MLP on scikit-learn's 8x8 digits.

Use it as ``optimizer.tasks.examples.equinox_mlp:make_equinox_mlp``. An Equinox model is a
pytree: ``eqx.partition`` splits it into its arrays (the parameters ACProp trains) and the
rest (structure, activation), which ``apply`` puts back with ``eqx.combine``.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import numpy as np
from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

from optimizer.tasks.adapter import FunctionTask, task_from_functions


def make_equinox_mlp(width: int = 32, depth: int = 2, batch_size: int = 64) -> FunctionTask:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # 1,797 images of 64 pixels
    y = digits.target.astype(np.int32)  # 10 classes

    def build(key: jax.Array) -> eqx.nn.MLP:
        return eqx.nn.MLP(in_size=64, out_size=10, width_size=width, depth=depth, key=key)

    _, static = eqx.partition(build(jax.random.key(0)), eqx.is_array)

    def init(key: jax.Array) -> Any:
        return eqx.filter(build(key), eqx.is_array)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        model = eqx.combine(params, static)
        return jax.vmap(model)(x)  # an Equinox MLP takes one example; vmap over the batch

    return task_from_functions(
        init, apply, x, y,
        loss="cross_entropy", batch_size=batch_size, default_steps=300, name="equinox-mlp",
        options={"width": width, "depth": depth, "batch_size": batch_size},
    )  # fmt: skip
