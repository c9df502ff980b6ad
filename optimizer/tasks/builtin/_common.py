"""Building blocks shared by the built-in tasks: dense layers, a supervised task (a named
loss) over an in-memory data set, and deterministic train/validation splits.

Data sets are small and kept on the device as constant arrays; a minibatch is drawn with
replacement from ``fold_in(key, step)``, so a batch depends only on the seed's data key and
the step number (common random numbers across configurations, and jittable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optimizer.tasks.base import TaskMeta

Params = Any
Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
}


def split(
    x: np.ndarray, y: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed shuffled train/validation split, features standardised on the train part."""
    order = np.random.RandomState(seed).permutation(len(x))
    n_val = round(len(x) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    x_train, x_val = standardise(x[train], x[val])
    return x_train, y[train], x_val, y[val]


def standardise(x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Zero mean, unit variance per feature using the training statistics (float32)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels in digits have zero spread
    return tuple(((a - mean) / std).astype(np.float32) for a in (x_train, *others))


def dense_init(key: Array, sizes: Sequence[int]) -> list[dict[str, Array]]:
    """He-normal weights and zero biases for a stack of dense layers ``sizes[0] -> ... ->
    sizes[-1]``."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (n_in, n_out), jnp.float32) * jnp.sqrt(2.0 / n_in),
            "b": jnp.zeros((n_out,), jnp.float32),
        }
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_apply(
    layers: Sequence[Mapping[str, Array]], x: Array, activation: Callable[[Array], Array]
) -> Array:
    """Dense layers with ``activation`` between them (none after the last)."""
    for layer in layers[:-1]:
        x = activation(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def count_params(init_params: Callable[[Array], Params]) -> int:
    """The number of scalars ``init_params`` creates (from shapes only; nothing is computed)."""
    shapes = jax.eval_shape(init_params, jax.random.key(0))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)))


def _cross_entropy(out: Array, y: Array) -> Array:
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


def _mse(out: Array, y: Array) -> Array:
    return jnp.mean((out.reshape(y.shape) - y) ** 2)


def _logistic(out: Array, y: Array) -> Array:
    return optax.sigmoid_binary_cross_entropy(out.reshape(y.shape), y).mean()


def _huber(out: Array, y: Array) -> Array:
    return optax.huber_loss(out.reshape(y.shape), y, delta=1.0).mean()


#: The losses a supervised task can train with: softmax cross-entropy on integer labels,
#: mean squared error, logistic (binary cross-entropy on 0/1 labels), Huber (delta 1).
LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "cross_entropy": _cross_entropy,
    "mse": _mse,
    "logistic": _logistic,
    "huber": _huber,
}


@dataclass(frozen=True, eq=False)
class SupervisedTask:
    """A named loss (``LOSSES``) of ``apply(params, x)`` against ``y`` on an in-memory data
    set: classification (cross-entropy, logistic), regression and reconstruction (MSE,
    Huber).

    ``eq=False`` keeps identity hashing: the arrays make value equality meaningless.
    """

    meta: TaskMeta
    x_train: Array
    y_train: Array
    x_val: Array
    y_val: Array
    init_fn: Callable[[Array], Params]
    apply_fn: Callable[[Params, Array], Array]
    batch_size: int
    loss_name: str = "cross_entropy"

    def init_params(self, key: Array) -> Params:
        return self.init_fn(key)

    def batch(self, key: Array, step: Array) -> tuple[Array, Array]:
        idx = jax.random.randint(
            jax.random.fold_in(key, step), (self.batch_size,), 0, self.x_train.shape[0]
        )
        return self.x_train[idx], self.y_train[idx]

    def loss(self, params: Params, batch: tuple[Array, Array]) -> Array:
        x, y = batch
        return LOSSES[self.loss_name](self.apply_fn(params, x), y)

    def validation_loss(self, params: Params) -> Array:
        return self.loss(params, (self.x_val, self.y_val))

    def accuracy(self, params: Params) -> Array:
        """Validation accuracy of a classifier (for demos and docs; the tuner optimises the
        loss)."""
        logits = self.apply_fn(params, self.x_val)
        return (logits.argmax(-1) == self.y_val).mean()


#: The classification tasks of the built-ins are supervised tasks with cross-entropy.
ClassificationTask = SupervisedTask


def supervised_task(
    *,
    name: str,
    options: Mapping[str, Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    init_fn: Callable[[Array], Params],
    apply_fn: Callable[[Params, Array], Array],
    batch_size: int,
    default_steps: int,
    loss: str = "cross_entropy",
) -> SupervisedTask:
    """A supervised task on ``data`` (train x, y, validation x, y): integer labels for
    cross-entropy, float targets for the other losses."""
    x_train, y_train, x_val, y_val = data
    meta = TaskMeta(
        name=name,
        n_params=count_params(init_fn),
        default_steps=default_steps,
        default_batch_size=batch_size,
        options=dict(options),
    )
    label = jnp.int32 if loss == "cross_entropy" else jnp.float32
    return SupervisedTask(
        meta=meta,
        x_train=jnp.asarray(x_train, jnp.float32),
        y_train=jnp.asarray(y_train, label),
        x_val=jnp.asarray(x_val, jnp.float32),
        y_val=jnp.asarray(y_val, label),
        init_fn=init_fn,
        apply_fn=apply_fn,
        batch_size=batch_size,
        loss_name=loss,
    )


def classification_task(**kwargs: Any) -> SupervisedTask:
    """A softmax cross-entropy task (``supervised_task`` with ``loss="cross_entropy"``)."""
    return supervised_task(**kwargs, loss="cross_entropy")
