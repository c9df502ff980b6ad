"""The model families that train on a user's uploaded data set, and which data each accepts.

A user without code of their own brings data instead (docs/tasks.md, "Your own data"): a job
names a family as its task and the data set by its SHA-256 in the task's ``dataset`` option.
The family is built-in code, so nothing the user sends runs anywhere. Each family accepts:

- ``logreg``: tabular or image data (images flattened) with integer class labels; multinomial
  logistic regression, cross-entropy.
- ``mlp``: tabular or image data (flattened); class labels (cross-entropy) or float targets
  (mean squared error, one output per target column).
- ``cnn``: images ``[rows, height, width(, channels)]``, at most 32 x 32 pixels and 4
  channels (the convolutions run as im2col matmuls, whose memory grows with the pixels),
  with class labels; 3x3 ReLU convolutions and a dense read-out.
- ``char-lm``: token or text data; the tiny causal transformer, its ``seq_len`` shorter than
  the training and validation text.

jax-free: the API checks a job's data set against its family here (``dataset_problem``)
before it stores the job; the implementations are in optimizer/tasks/builtin/own_data.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from optimizer.datasets import DatasetSummary
from optimizer.tasks.options import (
    ACTIVATION,
    DatasetOption,
    IntListOption,
    IntOption,
    OptionSchema,
)

__all__ = [
    "CHAR_LM_VAL_FRACTION",
    "DATASET_OPTION",
    "FAMILIES",
    "FAMILY_DEFAULT_STEPS",
    "MAX_IMAGE_CHANNELS",
    "MAX_IMAGE_SIDE",
    "VAL_FRACTION",
    "dataset_problem",
    "families_for",
]

#: The option that names a task's data set.
DATASET_OPTION = "dataset"
#: The share of rows a family holds out for validation when the data set has no ``x_val``.
VAL_FRACTION = 0.2
#: The char LM holds out the last tenth of the text when there is no ``x_val``.
CHAR_LM_VAL_FRACTION = 0.1
MAX_IMAGE_SIDE = 32
MAX_IMAGE_CHANNELS = 4

_BATCH = IntOption(64, 1, 4096, "minibatch size (rows drawn with replacement per step)")
_MODULE = "optimizer.tasks.builtin.own_data"

#: Each family's `TaskMeta.default_steps`, known here without JAX (the API gives a job that
#: names no steps its task's own; the implementations read them from here).
FAMILY_DEFAULT_STEPS: dict[str, int] = {"logreg": 200, "mlp": 300, "cnn": 300}

#: name -> (option schema, "module:factory" of the JAX implementation).
FAMILIES: dict[str, tuple[OptionSchema, str]] = {
    "logreg": (
        OptionSchema(
            {DATASET_OPTION: DatasetOption(), "batch_size": _BATCH},
            help="logistic regression on your data set (tabular or flattened images, classes)",
        ),
        f"{_MODULE}:make_logreg",
    ),
    "mlp": (
        OptionSchema(
            {
                DATASET_OPTION: DatasetOption(),
                "widths": IntListOption((64,), 1, 2048, 1, 8, "hidden layer widths"),
                "activation": ACTIVATION,
                "batch_size": _BATCH,
            },
            help="MLP on your data set (tabular or flattened images; classes or values)",
        ),
        f"{_MODULE}:make_mlp",
    ),
    "cnn": (
        OptionSchema(
            {
                DATASET_OPTION: DatasetOption(),
                "channels": IntListOption((8, 16), 1, 128, 1, 4, "3x3 conv channels per layer"),
                "batch_size": _BATCH,
            },
            help="small ReLU conv net on your images (classes)",
        ),
        f"{_MODULE}:make_cnn",
    ),
}


def _supervised(
    summary: DatasetSummary, kinds: tuple[str, ...], targets: tuple[str, ...]
) -> str | None:
    if summary.kind not in kinds:
        return f"it needs {' or '.join(kinds)} data, and this data set holds {summary.kind}"
    if summary.target not in targets:
        wanted = "integer class labels" if targets == ("classes",) else "labels or targets"
        return f"it needs {wanted} in 'y', and this data set's 'y' holds {summary.target}"
    return None


def _cnn(summary: DatasetSummary, options: Mapping[str, Any]) -> str | None:
    problem = _supervised(summary, ("images",), ("classes",))
    if problem is not None:
        return problem
    shape = summary.row_shape
    channels = shape[2] if len(shape) == 3 else 1
    if max(shape[:2]) > MAX_IMAGE_SIDE or channels > MAX_IMAGE_CHANNELS:
        return (
            f"its images are {' x '.join(map(str, shape))}; it takes at most "
            f"{MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE} pixels and {MAX_IMAGE_CHANNELS} channels"
        )
    return None


def char_lm_split(summary: DatasetSummary) -> tuple[int, int]:
    """Training and validation tokens of a token or text data set for the char LM."""
    if summary.validation_rows is not None:
        return summary.rows, summary.validation_rows
    train = int(summary.rows * (1 - CHAR_LM_VAL_FRACTION))
    return train, summary.rows - train


def _char_lm(summary: DatasetSummary, options: Mapping[str, Any]) -> str | None:
    if summary.kind not in ("tokens", "text"):
        return f"it needs token or text data, and this data set holds {summary.kind}"
    seq_len = int(options.get("seq_len", 32))
    train, val = char_lm_split(summary)
    if train < seq_len + 2 or val < seq_len + 1:
        return (
            f"with seq_len {seq_len} it needs at least {seq_len + 2} training and "
            f"{seq_len + 1} validation tokens; this data set gives {train} and {val}"
        )
    return None


_ACCEPTS: dict[str, Callable[[DatasetSummary, Mapping[str, Any]], str | None]] = {
    "logreg": lambda s, _o: _supervised(s, ("tabular", "images"), ("classes",)),
    "mlp": lambda s, _o: _supervised(s, ("tabular", "images"), ("classes", "values")),
    "cnn": _cnn,
    "char-lm": _char_lm,
}


def dataset_problem(task: str, options: Mapping[str, Any], summary: DatasetSummary) -> str | None:
    """Why family ``task`` (with its validated ``options``) cannot train on a data set of this
    ``summary``, or None when it can."""
    accepts = _ACCEPTS.get(task)
    if accepts is None:
        return f"task {task!r} does not train on uploaded data sets"
    problem = accepts(summary, options)
    return None if problem is None else f"task {task!r} cannot train on this data set: {problem}"


def families_for(summary: DatasetSummary) -> list[str]:
    """The families that accept a data set of this ``summary`` with their default options."""
    return sorted(name for name, accepts in _ACCEPTS.items() if accepts(summary, {}) is None)
