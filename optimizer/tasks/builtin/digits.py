"""``mlp-digits`` and ``cnn-digits``: scikit-learn's bundled 8x8 digits (1,797 images).

Features are standardised on a fixed 80/20 train/validation split. The MLP defaults to hidden
widths 64-128 (the 64-128-10 network of the project's measurements); the conv net stacks 3x3
ReLU convolutions ('SAME' padding, computed as im2col matmuls: optimizer/tasks/builtin/_conv.py)
and a dense read-out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np

from optimizer.tasks.builtin._common import (
    ACTIVATIONS,
    ClassificationTask,
    classification_task,
    dense_init,
    mlp_apply,
    split,
)
from optimizer.tasks.builtin._conv import ConvParams, conv_apply, conv_init
from optimizer.tasks.registry import builtin_default_steps

Array = jax.Array


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    data = load_digits()
    return split(data.data.astype(np.float32), data.target.astype(np.int32))


def make_mlp_digits(
    widths: Sequence[int] = (64, 128), activation: str = "relu", batch_size: int = 128
) -> ClassificationTask:
    sizes = [64, *widths, 10]
    act = ACTIVATIONS[activation]
    return classification_task(
        name="mlp-digits",
        options={"widths": list(widths), "activation": activation, "batch_size": batch_size},
        data=_digits(),
        init_fn=lambda key: dense_init(key, sizes),
        apply_fn=lambda params, x: mlp_apply(params, x, act),
        batch_size=batch_size,
        default_steps=builtin_default_steps("mlp-digits"),
    )


def _conv_init(key: Array, channels: Sequence[int]) -> ConvParams:
    return conv_init(key, (8, 8, 1), channels, 10)


def _conv_apply(params: ConvParams, x: Array) -> Array:
    """The conv net of optimizer/tasks/builtin/_conv.py on the flattened 8x8 digits."""
    return conv_apply(params, x.reshape(x.shape[0], 8, 8, 1))


def make_cnn_digits(channels: Sequence[int] = (8, 16), batch_size: int = 128) -> ClassificationTask:
    chans = list(channels)
    return classification_task(
        name="cnn-digits",
        options={"channels": chans, "batch_size": batch_size},
        data=_digits(),
        init_fn=lambda key: _conv_init(key, chans),
        apply_fn=_conv_apply,
        batch_size=batch_size,
        default_steps=builtin_default_steps("cnn-digits"),
    )
