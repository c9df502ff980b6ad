"""``mlp-digits`` and ``cnn-digits``: scikit-learn's bundled 8x8 digits (1,797 images).

Features are standardised on a fixed 80/20 train/validation split. The MLP defaults to hidden
widths 64-128 (the 64-128-10 network of the project's measurements); the conv net stacks 3x3
ReLU convolutions ('SAME' padding, computed as im2col matmuls) and a dense read-out.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.tasks.builtin._common import (
    ACTIVATIONS,
    ClassificationTask,
    classification_task,
    dense_init,
    mlp_apply,
    split,
)
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


def _conv_init(key: Array, channels: Sequence[int]) -> dict[str, list[dict[str, Array]]]:
    keys = jax.random.split(key, len(channels) + 1)
    convs = []
    for k, c_in, c_out in zip(keys[:-1], [1, *channels[:-1]], channels, strict=True):
        w = jax.random.normal(k, (3, 3, c_in, c_out), jnp.float32) * jnp.sqrt(2.0 / (9 * c_in))
        convs.append({"w": w, "b": jnp.zeros((c_out,), jnp.float32)})
    return {"convs": convs, "head": dense_init(keys[-1], [64 * channels[-1], 10])}


def _conv_apply(params: dict[str, list[dict[str, Array]]], x: Array) -> Array:
    """3x3 'SAME' convolutions as im2col: each layer is one ``[n * 64, 9 * c_in] @ [9 * c_in,
    c_out]`` matmul over the nine shifted copies of the zero-padded 8x8 maps.

    This equals ``lax.conv_general_dilated`` (NHWC, HWIO; ``tests/unit/test_tasks.py`` checks
    it), but the trainer vmaps the task over lanes, each with its own weights: vmapped, a conv
    becomes a grouped convolution inside the training loop, which XLA:CPU ran about 50x
    slower (~50 ms per lane-step), while the matmul becomes a batched matmul (~1-3 ms).
    """
    n = x.shape[0]
    h = x.reshape(n, 8, 8, 1)
    for conv in params["convs"]:
        c_in = h.shape[-1]
        padded = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        # channel index (3 * i + j) * c_in + c matches w.reshape(9 * c_in, c_out) of HWIO w
        patches = jnp.concatenate(
            [padded[:, i : i + 8, j : j + 8, :] for i in range(3) for j in range(3)], axis=-1
        )
        out = patches.reshape(n * 64, 9 * c_in) @ conv["w"].reshape(9 * c_in, -1)
        h = jax.nn.relu(out + conv["b"]).reshape(n, 8, 8, -1)
    return mlp_apply(params["head"], h.reshape(n, -1), jax.nn.relu)


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
