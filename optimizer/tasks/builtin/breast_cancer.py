"""``logreg-breast-cancer``: logistic regression on scikit-learn's bundled breast cancer data
(569 examples, 30 features), standardised, fixed 80/20 split. A convex baseline: any
divergence here is the optimizer's, not the model's."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.tasks.builtin._common import ClassificationTask, classification_task, split
from optimizer.tasks.registry import builtin_default_steps

Array = jax.Array


@functools.cache
def _breast_cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer  # bundled: no download

    data = load_breast_cancer()
    return split(data.data.astype(np.float32), data.target.astype(np.int32))


def _init(key: Array) -> dict[str, Array]:
    del key  # a convex problem: start every seed from zero, seeds vary the batches only
    return {"w": jnp.zeros((30, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}


def _apply(params: dict[str, Array], x: Array) -> Array:
    # Two-class softmax is logistic regression with a redundant (harmless) parametrisation;
    # it lets this task share the classification code path.
    return x @ params["w"] + params["b"]


def make_logreg_breast_cancer(batch_size: int = 64) -> ClassificationTask:
    return classification_task(
        name="logreg-breast-cancer",
        options={"batch_size": batch_size},
        data=_breast_cancer(),
        init_fn=_init,
        apply_fn=_apply,
        batch_size=batch_size,
        default_steps=builtin_default_steps("logreg-breast-cancer"),
    )
