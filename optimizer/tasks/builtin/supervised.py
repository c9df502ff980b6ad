"""Supervised tasks built from offline data sets and the built-in model families: the
variety behind the development suite (bench/suite.py) on which the recommendation's rules are
chosen and judged.

Data sets: scikit-learn's bundled ones (``load_*``, never ``fetch_*``), its generators
(``make_*``, seeded) and MNIST-1D generated offline. Models: linear, an MLP of any depth and
width, and an MLP autoencoder (reconstruction). Losses: cross-entropy, logistic, MSE, Huber.
A task may scale its inputs or targets (un-standardised problems), subsample its labels with
noise, and pick its minibatch size (gradient noise). Everything is deterministic: the same
options give the same arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from optimizer.tasks.builtin._common import (
    ACTIVATIONS,
    SupervisedTask,
    dense_init,
    mlp_apply,
    standardise,
)

__all__ = ["DATASETS", "make_supervised"]

Data = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@functools.cache
def _sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets as ds  # bundled data and seeded generators: no download

    if name == "moons":
        return ds.make_moons(n_samples=1000, noise=0.25, random_state=0)
    if name == "circles":
        return ds.make_circles(n_samples=1000, noise=0.1, factor=0.5, random_state=0)
    if name == "synthetic-regression":
        x, y = ds.make_regression(
            n_samples=2000, n_features=20, n_informative=10, noise=5.0, random_state=0
        )
        return x, y
    if name == "synthetic-classification":
        return ds.make_classification(
            n_samples=2000, n_features=40, n_informative=12, n_classes=4, random_state=0
        )
    loaders = {
        "digits": ds.load_digits,
        "iris": ds.load_iris,
        "wine": ds.load_wine,
        "breast-cancer": ds.load_breast_cancer,
        "diabetes": ds.load_diabetes,
    }
    data = loaders[name]()
    return data.data, data.target


@functools.cache
def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # offline, seeded by its args
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


#: name -> what its targets are ("classes" for integer labels, "values" for regression).
DATASETS: dict[str, str] = {
    "digits": "classes",
    "iris": "classes",
    "wine": "classes",
    "breast-cancer": "classes",
    "moons": "classes",
    "circles": "classes",
    "synthetic-classification": "classes",
    "mnist1d": "classes",
    "diabetes": "values",
    "synthetic-regression": "values",
}


def _data(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _mnist1d() if dataset == "mnist1d" else _sklearn(dataset)
    return np.asarray(x, np.float64), np.asarray(y)


def _prepared(
    dataset: str, *, standardise_inputs: bool, input_scale: float, target_scale: float,
    label_noise: float, autoencoder: bool,
) -> Data:  # fmt: skip
    x, y = _data(dataset)
    order = np.random.RandomState(0).permutation(len(x))
    n_val = round(0.2 * len(x))
    val, train = order[:n_val], order[n_val:]
    if standardise_inputs:
        x_train, x_val = standardise(x[train], x[val])
    else:
        x_train, x_val = x[train].astype(np.float32), x[val].astype(np.float32)
    x_train, x_val = x_train * input_scale, x_val * input_scale
    if autoencoder:
        return x_train, x_train.copy(), x_val, x_val.copy()
    y_train, y_val = y[train], y[val]
    if DATASETS[dataset] == "values":
        # Centred on the training mean; scaled by the training spread times target_scale
        # (1: standardised targets; the raw spread: the data's own units).
        mean, spread = y_train.mean(), y_train.std()
        y_train = (y_train - mean) / spread * target_scale
        y_val = (y_val - mean) / spread * target_scale
        return x_train, y_train.astype(np.float32), x_val, y_val.astype(np.float32)
    y_train = y_train.astype(np.int32)
    if label_noise > 0:
        rng = np.random.RandomState(1)
        flip = rng.rand(len(y_train)) < label_noise
        y_train = np.where(flip, rng.randint(0, int(y.max()) + 1, len(y_train)), y_train)
    return x_train, y_train.astype(np.int32), x_val, y_val.astype(np.int32)


def make_supervised(
    name: str,
    *,
    dataset: str,
    model: str = "mlp",
    loss: str = "cross_entropy",
    widths: Sequence[int] = (64,),
    activation: str = "relu",
    batch_size: int = 64,
    standardise_inputs: bool = True,
    input_scale: float = 1.0,
    target_scale: float = 1.0,
    label_noise: float = 0.0,
    steps: int = 300,
) -> SupervisedTask:
    """A supervised task called ``name``.

    Args:
      dataset: one of :data:`DATASETS`.
      model: ``linear`` (no hidden layer), ``mlp`` (hidden ``widths``) or ``autoencoder``
        (an MLP through ``widths`` back to the input, trained to reconstruct it).
      loss: cross_entropy (classes), logistic (two classes), mse or huber (values, or the
        input for an autoencoder).
      batch_size: examples per step, drawn with replacement.
      standardise_inputs: zero mean and unit variance per feature (on the training part).
      input_scale, target_scale: multiply the inputs, and a regression's standardised
        targets, by these (problems in awkward units).
      label_noise: the share of training labels replaced by random classes.
      steps: the task's default number of training steps.
    """
    from optimizer.tasks.builtin._common import supervised_task

    autoencoder = model == "autoencoder"
    data = _prepared(
        dataset, standardise_inputs=standardise_inputs, input_scale=input_scale,
        target_scale=target_scale, label_noise=label_noise, autoencoder=autoencoder,
    )  # fmt: skip
    n_in = data[0].shape[1]
    if autoencoder:
        n_out = n_in
    elif loss == "cross_entropy":
        n_out = int(max(data[1].max(), data[3].max())) + 1
    else:
        n_out = 1
    hidden = [] if model == "linear" else list(widths)
    sizes = [n_in, *hidden, n_out]
    act = ACTIVATIONS[activation]
    options: dict[str, Any] = {
        "dataset": dataset, "model": model, "loss": loss, "widths": hidden,
        "activation": activation, "batch_size": batch_size,
        "standardise_inputs": standardise_inputs, "input_scale": input_scale,
        "target_scale": target_scale, "label_noise": label_noise,
    }  # fmt: skip
    return supervised_task(
        name=name,
        options=options,
        data=data,
        init_fn=lambda key: dense_init(key, sizes),
        apply_fn=lambda params, x: mlp_apply(params, x, act),
        batch_size=batch_size,
        default_steps=steps,
        loss=loss,
    )
