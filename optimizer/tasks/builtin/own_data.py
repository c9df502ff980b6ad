"""The model families on a user's uploaded data set: ``logreg``, ``mlp`` and ``cnn`` (the
char LM takes one too: optimizer/tasks/builtin/char_lm.py).

What each family accepts is decided, jax-free, in optimizer/tasks/dataset_families.py; here
the arrays become a supervised task. Without ``x_val`` a fixed 20 % of the rows (a seeded
permutation) is held out. Inputs are standardised per feature (per pixel and channel for
images) with the training rows' statistics, as the built-in tasks do; float targets are
standardised per column the same way, so the tuned learning rate does not depend on the units
of the targets. Class labels are used as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.datasets import Dataset
from optimizer.tasks.builtin._common import (
    ACTIVATIONS,
    SupervisedTask,
    dense_init,
    mlp_apply,
    standardise,
    supervised_task,
)
from optimizer.tasks.builtin._conv import conv_apply, conv_init
from optimizer.tasks.dataset_families import FAMILY_DEFAULT_STEPS, VAL_FRACTION

__all__ = ["make_cnn", "make_logreg", "make_mlp"]

Array = jax.Array
Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _checked(dataset: str, data: Dataset | None) -> Dataset:
    if data is None or data.sha256 != dataset:
        raise ValueError(f"the arrays of data set {dataset} are needed (data=)")
    return data


def _rows(data: Dataset) -> Data:
    """Training and validation rows: the data set's own split, or a fixed held-out 20 %."""
    a = data.arrays
    if "x_val" in a:
        return a["x"], a["y"], a["x_val"], a["y_val"]
    order = np.random.RandomState(0).permutation(len(a["x"]))
    n_val = max(1, round(len(order) * VAL_FRACTION))
    val, train = order[:n_val], order[n_val:]
    return a["x"][train], a["y"][train], a["x"][val], a["y"][val]


def _prepared(data: Dataset) -> Data:
    """Standardised float32 inputs (rows keep their shape) and the targets, as the module
    docstring says."""
    x_train, y_train, x_val, y_val = _rows(data)
    row = x_train.shape[1:]
    flat = [np.asarray(v, np.float64).reshape(len(v), -1) for v in (x_train, x_val)]
    x_train, x_val = (v.reshape(len(v), *row) for v in standardise(*flat))
    if data.summary.target == "classes":
        return x_train, y_train.astype(np.int32), x_val, y_val.astype(np.int32)
    mean, spread = y_train.mean(axis=0), y_train.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    y_train, y_val = ((v - mean) / spread for v in (y_train, y_val))
    return x_train, y_train.astype(np.float32), x_val, y_val.astype(np.float32)


def _flat(data: Data) -> Data:
    x_train, y_train, x_val, y_val = data
    return x_train.reshape(len(x_train), -1), y_train, x_val.reshape(len(x_val), -1), y_val


def _outputs(data: Dataset) -> tuple[int, str]:
    s = data.summary
    if s.target == "classes":
        return int(s.classes or 2), "cross_entropy"
    return int(s.outputs or 1), "mse"


def make_logreg(
    dataset: str, batch_size: int = 64, *, data: Dataset | None = None
) -> SupervisedTask:
    """Multinomial logistic regression (softmax cross-entropy) from zero weights."""
    d = _checked(dataset, data)
    arrays = _flat(_prepared(d))
    n_in, (n_out, _) = arrays[0].shape[1], _outputs(d)

    def init(key: Array) -> dict[str, Array]:
        del key  # convex: every seed starts from zero, seeds vary the batches only
        return {"w": jnp.zeros((n_in, n_out), jnp.float32), "b": jnp.zeros((n_out,), jnp.float32)}

    return supervised_task(
        name="logreg",
        options={"dataset": dataset, "batch_size": batch_size},
        data=arrays,
        init_fn=init,
        apply_fn=lambda params, x: x @ params["w"] + params["b"],
        batch_size=batch_size,
        default_steps=FAMILY_DEFAULT_STEPS["logreg"],
        loss="cross_entropy",
    )


def make_mlp(
    dataset: str,
    widths: Sequence[int] = (64,),
    activation: str = "relu",
    batch_size: int = 64,
    *,
    data: Dataset | None = None,
) -> SupervisedTask:
    """An MLP: cross-entropy on class labels, mean squared error on float targets."""
    d = _checked(dataset, data)
    arrays = _flat(_prepared(d))
    n_out, loss = _outputs(d)
    sizes = [arrays[0].shape[1], *widths, n_out]
    act = ACTIVATIONS[activation]
    options: dict[str, Any] = {
        "dataset": dataset, "widths": list(widths), "activation": activation,
        "batch_size": batch_size,
    }  # fmt: skip
    return supervised_task(
        name="mlp",
        options=options,
        data=arrays,
        init_fn=lambda key: dense_init(key, sizes),
        apply_fn=lambda params, x: mlp_apply(params, x, act),
        batch_size=batch_size,
        default_steps=FAMILY_DEFAULT_STEPS["mlp"],
        loss=loss,
    )


def make_cnn(
    dataset: str,
    channels: Sequence[int] = (8, 16),
    batch_size: int = 64,
    *,
    data: Dataset | None = None,
) -> SupervisedTask:
    """3x3 ReLU convolutions and a dense read-out on images, cross-entropy on class labels."""
    d = _checked(dataset, data)
    x_train, y_train, x_val, y_val = _prepared(d)
    row = x_train.shape[1:]
    image = (row[0], row[1], row[2] if len(row) == 3 else 1)
    n_out, _ = _outputs(d)
    chans = list(channels)
    # Rows travel flat (the supervised task's batches are [n, features]); the model puts
    # them back into images.
    flat_size = math.prod(image)
    return supervised_task(
        name="cnn",
        options={"dataset": dataset, "channels": chans, "batch_size": batch_size},
        data=(x_train.reshape(-1, flat_size), y_train, x_val.reshape(-1, flat_size), y_val),
        init_fn=lambda key: conv_init(key, image, chans, n_out),
        apply_fn=lambda params, x: conv_apply(params, x.reshape(x.shape[0], *image)),
        batch_size=batch_size,
        default_steps=FAMILY_DEFAULT_STEPS["cnn"],
        loss="cross_entropy",
    )
