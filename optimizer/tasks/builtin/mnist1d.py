"""``mlp-mnist1d``: an MLP on MNIST-1D (Greydanus, 2020), generated offline.

``mnist1d.data.make_dataset`` builds the 5,000 sequences of length 40 from templates in
about a second; ``get_dataset`` would download them, so it is never used. The arrays are
generated once per process and kept in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from optimizer.tasks.builtin._common import (
    ACTIVATIONS,
    ClassificationTask,
    classification_task,
    dense_init,
    mlp_apply,
    standardise,
)
from optimizer.tasks.registry import builtin_default_steps


@functools.cache
def _mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())  # deterministic: the args carry seed 42
    x_train, x_val = standardise(np.asarray(data["x"]), np.asarray(data["x_test"]))
    return x_train, np.asarray(data["y"], np.int32), x_val, np.asarray(data["y_test"], np.int32)


def make_mlp_mnist1d(
    widths: Sequence[int] = (128, 128), activation: str = "relu", batch_size: int = 128
) -> ClassificationTask:
    data = _mnist1d()
    sizes = [data[0].shape[1], *widths, 10]
    act = ACTIVATIONS[activation]
    return classification_task(
        name="mlp-mnist1d",
        options={"widths": list(widths), "activation": activation, "batch_size": batch_size},
        data=data,
        init_fn=lambda key: dense_init(key, sizes),
        apply_fn=lambda params, x: mlp_apply(params, x, act),
        batch_size=batch_size,
        default_steps=builtin_default_steps("mlp-mnist1d"),
    )
