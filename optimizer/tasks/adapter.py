"""A user's model as a task in a few lines: plain JAX functions, arrays and a named loss.

:func:`task_from_functions` takes ``init(key) -> params`` and ``apply(params, x) ->
predictions`` (a Flax ``model.init``/``model.apply`` pair, an Equinox model split into its
arrays and the rest, or any pure functions), the training arrays, optional validation
arrays, a loss by name, the batch size and the default number of steps, and returns a
:class:`FunctionTask`, which satisfies the :class:`~optimizer.tasks.base.Task` protocol. Like
the built-in tasks it keeps its data on the device and draws each minibatch with replacement
from ``fold_in(key, step)``: a pure, jittable function of the seed's data key and the step,
so every configuration of a seed sees the same batches.

Everything that can be checked before training is checked here, with a ``ValueError`` that
says what to change: shapes, dtypes, finite data, and the predictions' shape against the
targets (from ``jax.eval_shape``: nothing is computed). See docs/tasks.md.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optimizer.tasks.base import TaskMeta
from optimizer.tasks.builtin._common import LOSSES

__all__ = ["LOSS_NAMES", "FunctionTask", "task_from_functions"]

Params = Any
Array = jax.Array

#: The loss names this adapter takes, and the built-in loss each one is.
LOSS_NAMES: dict[str, str] = {
    "cross_entropy": "cross_entropy",  # softmax cross-entropy; integer labels [n], logits [n, C]
    "mean_squared_error": "mse",  # float targets, predictions of the same size per example
    "mse": "mse",
    "logistic": "logistic",  # binary cross-entropy on logits; 0/1 targets
    "huber": "huber",  # Huber loss (delta 1) on float targets
}


@dataclass(frozen=True, eq=False)
class FunctionTask:
    """``LOSSES[loss](apply(params, x), y)`` on in-memory arrays; ``x`` may be a pytree of
    arrays sharing their first axis. Built by :func:`task_from_functions`.

    ``eq=False`` keeps identity hashing: the arrays make value equality meaningless.
    """

    meta: TaskMeta
    init_fn: Callable[[Array], Params]
    apply_fn: Callable[[Params, Any], Array]
    x_train: Any
    y_train: Array
    x_val: Any
    y_val: Array
    batch_size: int
    loss_name: str

    def init_params(self, key: Array) -> Params:
        return self.init_fn(key)

    def batch(self, key: Array, step: Array) -> tuple[Any, Array]:
        n = self.y_train.shape[0]
        idx = jax.random.randint(jax.random.fold_in(key, step), (self.batch_size,), 0, n)
        return jax.tree.map(lambda a: a[idx], self.x_train), self.y_train[idx]

    def loss(self, params: Params, batch: tuple[Any, Array]) -> Array:
        x, y = batch
        return LOSSES[self.loss_name](self.apply_fn(params, x), y)

    def validation_loss(self, params: Params) -> Array:
        return self.loss(params, (self.x_val, self.y_val))


def _first_axis(x: Any, what: str) -> int:
    leaves = jax.tree.leaves(x)
    if not leaves:
        raise ValueError(f"{what} holds no array")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else -1 for leaf in leaves}
    if -1 in sizes or len(sizes) != 1:
        raise ValueError(
            f"every array of {what} needs the same first axis (one row per example), got "
            f"shapes {[np.shape(leaf) for leaf in leaves]}"
        )
    return int(sizes.pop())


def _as_inputs(x: Any, what: str) -> Any:
    def convert(leaf: Any) -> Any:
        a = np.asarray(leaf)
        if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
            raise ValueError(f"{what} must hold numbers, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError(f"{what} holds NaN or infinite values; every input must be finite")
        return jnp.asarray(a, jnp.float32) if np.issubdtype(a.dtype, np.floating) else a

    return jax.tree.map(convert, x)


def _as_targets(y: Any, loss: str, what: str) -> Array:
    a = np.asarray(y)
    if loss == "cross_entropy":
        if not np.issubdtype(a.dtype, np.integer) or a.ndim != 1:
            raise ValueError(
                f"{what} must be integer class labels of shape [n] for 'cross_entropy', got "
                f"dtype {a.dtype} and shape {a.shape}"
            )
        if len(a) and a.min() < 0:
            raise ValueError(f"{what} holds a negative class label ({a.min()})")
        return jnp.asarray(a, jnp.int32)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"{what} must hold numbers, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values; every target must be finite")
    if loss == "logistic" and not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{what} must be 0 or 1 for the 'logistic' loss")
    return jnp.asarray(a)


def _holdout(x: Any, y: Array, fraction: float) -> tuple[Any, Array, Any, Array]:
    n = y.shape[0]
    n_val = round(fraction * n)
    if fraction == 0.0:
        return x, y, x, y  # validation on the training data, as asked
    if not 1 <= n_val < n:
        raise ValueError(
            f"validation_fraction={fraction:g} of {n} examples leaves no training or no "
            "validation example; pass x_val and y_val, or another fraction"
        )
    order = np.random.RandomState(0).permutation(n)  # fixed: the same task every time
    val, train = jnp.asarray(order[:n_val]), jnp.asarray(order[n_val:])
    take = lambda idx: jax.tree.map(lambda a: a[idx], x)  # noqa: E731
    return take(train), y[train], take(val), y[val]


def _check_predictions(task: FunctionTask) -> int:
    """The predictions' shape against the targets, from shapes alone (nothing computed);
    returns the number of parameters."""
    try:
        params = jax.eval_shape(task.init_fn, jax.random.key(0))
        x, y = jax.eval_shape(task.batch, jax.random.key(0), jnp.int32(1))
        out = jax.eval_shape(task.apply_fn, params, x)
    except Exception as exc:  # the user's functions: say where it failed, not a traceback
        raise ValueError(
            f"init(key) then apply(params, x) on a batch failed: {type(exc).__name__}: {exc}"
        ) from exc
    shape = getattr(out, "shape", None)
    if shape is None:
        raise ValueError(f"apply(params, x) must return one array, got {type(out).__name__}")
    if task.loss_name == "cross_entropy":
        if len(shape) != 2 or shape[0] != task.batch_size:
            raise ValueError(
                f"for 'cross_entropy', apply(params, x) must return logits of shape "
                f"[batch, classes], got {shape} for a batch of {task.batch_size}"
            )
        top = max(int(np.max(np.asarray(task.y_train))), int(np.max(np.asarray(task.y_val))))
        if shape[1] <= top:
            raise ValueError(f"apply returns {shape[1]} logits, but the labels go up to {top}")
    elif int(np.prod(shape)) != int(np.prod(y.shape)):
        raise ValueError(
            f"for {task.loss_name!r}, apply(params, x) must return one prediction per target "
            f"value: got shape {shape} for targets of shape {y.shape}"
        )
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def task_from_functions(
    init: Callable[[Array], Params],
    apply: Callable[[Params, Any], Array],
    x: Any,
    y: Any,
    *,
    x_val: Any = None,
    y_val: Any = None,
    loss: str = "cross_entropy",
    batch_size: int = 128,
    default_steps: int = 300,
    validation_fraction: float = 0.2,
    name: str = "custom",
    options: Mapping[str, Any] | None = None,
) -> FunctionTask:
    """A :class:`~optimizer.tasks.base.Task` from a model's pure functions and its data.

    Args:
      init: ``init(key) -> params``, a pytree of arrays (the same key, the same params).
      apply: ``apply(params, x) -> predictions`` for a batch ``x``: logits ``[batch, classes]``
        for ``cross_entropy``, one value per target otherwise.
      x, y: the training inputs (an array, or a pytree of arrays) and targets, one row per
        example; numpy or JAX arrays.
      x_val, y_val: held-out data for the validation loss the tuner compares trials by.
        Without them ``validation_fraction`` of the examples (a fixed shuffle) is held out;
        ``validation_fraction=0`` validates on the training data.
      loss: ``cross_entropy`` (integer labels), ``mean_squared_error`` (or ``mse``),
        ``logistic`` (0/1 targets, logits out), ``huber``.
      batch_size: examples per step, drawn with replacement.
      default_steps: the training steps of a trial when the job names none.
      name: the task's name in results and logs.
      options: the options your factory was called with, kept in ``meta.options``.

    Raises:
      ValueError: naming what does not fit (shapes, dtypes, non-finite data, the loss).
    """
    if not callable(init) or not callable(apply):
        raise ValueError("init and apply must be functions: init(key), apply(params, x)")
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}, got {loss!r}")
    for label, value, low in (("batch_size", batch_size, 1), ("default_steps", default_steps, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if not (isinstance(validation_fraction, float | int) and 0 <= validation_fraction < 1):
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    loss_name = LOSS_NAMES[loss]
    n = _first_axis(x, "x")
    if _first_axis(y, "y") != n:
        raise ValueError(f"x has {n} examples but y has {_first_axis(y, 'y')}")
    x_train, y_train = _as_inputs(x, "x"), _as_targets(y, loss, "y")
    if (x_val is None) != (y_val is None):
        raise ValueError("pass both x_val and y_val, or neither")
    if x_val is None:
        x_train, y_train, xv, yv = _holdout(x_train, y_train, float(validation_fraction))
    else:
        if _first_axis(x_val, "x_val") != _first_axis(y_val, "y_val"):
            raise ValueError("x_val and y_val need the same number of examples")
        xv, yv = _as_inputs(x_val, "x_val"), _as_targets(y_val, loss, "y_val")
    meta_options = {
        **dict(options or {}),
        "loss": loss,
        "batch_size": batch_size,
        "n_train": int(y_train.shape[0]),
        "n_val": int(yv.shape[0]),
        # Compiled programs are cached per (task class, name, options) in a process; this
        # instance's own token keeps two tasks with the same name apart, whatever their code.
        "instance": uuid.uuid4().hex,
    }
    meta = TaskMeta(name, 0, default_steps, batch_size, meta_options)
    task = FunctionTask(meta, init, apply, x_train, y_train, xv, yv, batch_size, loss_name)
    n_params = _check_predictions(task)
    return dataclasses.replace(task, meta=dataclasses.replace(meta, n_params=n_params))
