"""A small ReLU conv net: 3x3 'SAME' convolutions, computed as im2col matmuls, and a dense
read-out. Shared by ``cnn-digits`` (8x8 grey digits) and the ``cnn`` family (a user's
images, NHWC).

The convolutions equal ``lax.conv_general_dilated`` (NHWC, HWIO; ``tests/unit/test_tasks.py``
checks it), but the trainer vmaps the task over lanes, each with its own weights: vmapped, a
conv becomes a grouped convolution inside the training loop, which XLA:CPU ran about 50x
slower (~50 ms per lane-step), while the matmul becomes a batched matmul (~1-3 ms).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from optimizer.tasks.builtin._common import dense_init, mlp_apply

Array = jax.Array
ConvParams = dict[str, list[dict[str, Array]]]


def conv_init(
    key: Array, image: tuple[int, int, int], channels: Sequence[int], n_out: int
) -> ConvParams:
    """He-normal 3x3 kernels (HWIO) for ``image`` = (height, width, channels) inputs, zero
    biases, and a dense read-out of the last feature maps to ``n_out``."""
    height, width, c0 = image
    keys = jax.random.split(key, len(channels) + 1)
    convs = []
    for k, c_in, c_out in zip(keys[:-1], [c0, *channels[:-1]], channels, strict=True):
        w = jax.random.normal(k, (3, 3, c_in, c_out), jnp.float32) * jnp.sqrt(2.0 / (9 * c_in))
        convs.append({"w": w, "b": jnp.zeros((c_out,), jnp.float32)})
    return {"convs": convs, "head": dense_init(keys[-1], [height * width * channels[-1], n_out])}


def conv_apply(params: ConvParams, x: Array) -> Array:
    """Logits of ``x`` [n, height, width, channels]: each layer is one
    ``[n * h * w, 9 * c_in] @ [9 * c_in, c_out]`` matmul over the nine shifted copies of the
    zero-padded maps."""
    n, height, width = x.shape[:3]
    h = x
    for conv in params["convs"]:
        c_in = h.shape[-1]
        padded = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        # channel index (3 * i + j) * c_in + c matches w.reshape(9 * c_in, c_out) of HWIO w
        patches = jnp.concatenate(
            [padded[:, i : i + height, j : j + width, :] for i in range(3) for j in range(3)],
            axis=-1,
        )
        out = patches.reshape(n * height * width, 9 * c_in) @ conv["w"].reshape(9 * c_in, -1)
        h = jax.nn.relu(out + conv["b"]).reshape(n, height, width, -1)
    return mlp_apply(params["head"], h.reshape(n, -1), jax.nn.relu)
