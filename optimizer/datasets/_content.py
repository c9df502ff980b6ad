"""What the arrays of a data set must be, and the summary the service keeps of them.

The kind of a data set follows from ``x``:

- ``tabular``: 2-D numbers ``[rows, features]``;
- ``images``: 3-D ``[rows, height, width]`` or 4-D ``[rows, height, width, channels]`` numbers;
- ``tokens``: a 1-D sequence of non-negative integers below :data:`MAX_VOCAB`;
- ``text``: unicode text, a string (0-D) or a 1-D array of strings (joined in order).

Tabular and image data sets are supervised: ``y`` holds one target per row, integer class
labels (``[rows]``, in ``[0, MAX_CLASSES)``, at least two classes) or float values
(``[rows]`` or ``[rows, outputs]``). Token and text data sets have no ``y``: a language model
predicts the next token. ``x_val`` (and, when there is a ``y``, ``y_val``) is an optional
validation split of the same kind and trailing shape; without it the families hold out a
fixed share of the rows. Floats must be finite everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.datasets._npz import DatasetError

__all__ = ["MAX_CLASSES", "MAX_VOCAB", "MIN_ROWS", "MIN_TOKENS", "DatasetSummary", "summarise"]

#: Fewest rows in ``x`` of a tabular or image data set (a held-out share must remain).
MIN_ROWS = 10
#: Fewest tokens (or characters) in ``x`` of a token or text data set.
MIN_TOKENS = 64
#: Class labels lie in ``[0, MAX_CLASSES)``; targets have at most this many columns.
MAX_CLASSES = 1000
#: Token ids lie in ``[0, MAX_VOCAB)``.
MAX_VOCAB = 4096


@dataclass(frozen=True)
class DatasetSummary:
    """What the service stores and shows of a data set, and what families are checked against.

    Attributes:
        kind: ``tabular``, ``images``, ``tokens`` or ``text``.
        arrays: per array, its ``dtype`` (numpy's name) and ``shape``.
        rows: rows of ``x`` (tokens or characters for a token or text data set).
        validation_rows: rows (tokens, characters) of ``x_val``; None without one.
        target: ``classes`` or ``values`` for a supervised data set, else None.
        classes: the number of classes (the largest label + 1) when ``target`` is classes.
        outputs: target columns when ``target`` is values (1 for a 1-D ``y``).
        vocab: for tokens, the largest id + 1.
    """

    kind: str
    arrays: Mapping[str, Mapping[str, Any]]
    rows: int
    validation_rows: int | None = None
    target: str | None = None
    classes: int | None = None
    outputs: int | None = None
    vocab: int | None = None

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one row of ``x`` (features; height, width(, channels))."""
        return tuple(self.arrays["x"]["shape"][1:])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arrays": {
                k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in self.arrays.items()
            },
            "rows": self.rows,
            "validation_rows": self.validation_rows,
            "target": self.target,
            "classes": self.classes,
            "outputs": self.outputs,
            "vocab": self.vocab,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSummary:
        arrays = {
            k: {"dtype": str(v["dtype"]), "shape": tuple(v["shape"])}
            for k, v in data["arrays"].items()
        }
        return cls(
            kind=str(data["kind"]),
            arrays=arrays,
            rows=int(data["rows"]),
            validation_rows=data.get("validation_rows"),
            target=data.get("target"),
            classes=data.get("classes"),
            outputs=data.get("outputs"),
            vocab=data.get("vocab"),
        )


def _fail(message: str, code: str, array: str | None = None) -> DatasetError:
    return DatasetError(message, code=code, array=array)


def _finite(arrays: Mapping[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise _fail(
                f"array {name!r} holds {bad} NaN or infinite value(s); remove or impute them",
                "non_finite",
                name,
            )


def _kind(x: np.ndarray) -> str:
    if x.dtype.kind == "U":
        if x.ndim > 1:
            raise _fail(
                f"text 'x' must be a string or a 1-D array of strings, not {x.ndim}-D",
                "shape",
                "x",
            )
        return "text"
    if x.ndim == 1:
        if x.dtype.kind not in "iu":
            raise _fail(
                f"a 1-D 'x' is a token sequence and must hold integers, not {x.dtype}; "
                "tabular data needs a 2-D x [rows, features] (x.reshape(-1, 1) for one feature)",
                "shape",
                "x",
            )
        return "tokens"
    if x.ndim in (2, 3, 4):
        if 0 in x.shape[1:]:
            raise _fail(f"'x' has an empty dimension: shape {x.shape}", "shape", "x")
        return "tabular" if x.ndim == 2 else "images"
    raise _fail(
        "'x' must be 2-D [rows, features], 3-D or 4-D images [rows, height, width(, channels)], "
        f"1-D integer tokens or text; got a {x.ndim}-D array",
        "shape",
        "x",
    )


def _sequence(arrays: Mapping[str, np.ndarray], kind: str) -> DatasetSummary:
    for name in ("y", "y_val"):
        if name in arrays:
            raise _fail(
                f"a {kind} data set has no {name!r}: the language model predicts the next token",
                "unexpected_array",
                name,
            )
    sizes: dict[str, int] = {}
    vocab = 0
    for name in ("x", "x_val"):
        if name not in arrays:
            continue
        a = arrays[name]
        if kind == "text":
            if a.dtype.kind != "U" or a.ndim > 1:
                raise _fail(f"{name!r} must be text like 'x'", "dtype", name)
            sizes[name] = int(np.char.str_len(a).sum())
        else:
            if a.dtype.kind not in "iu" or a.ndim != 1:
                raise _fail(
                    f"{name!r} must be a 1-D integer token sequence like 'x'", "dtype", name
                )
            if a.size and (int(a.min()) < 0 or int(a.max()) >= MAX_VOCAB):
                raise _fail(
                    f"token ids in {name!r} must lie in [0, {MAX_VOCAB}), found "
                    f"[{int(a.min())}, {int(a.max())}]",
                    "values",
                    name,
                )
            sizes[name] = int(a.size)
            vocab = max(vocab, int(a.max()) + 1 if a.size else 0)
    if sizes["x"] < MIN_TOKENS:
        raise _fail(
            f"'x' has {sizes['x']} {'characters' if kind == 'text' else 'tokens'}; "
            f"at least {MIN_TOKENS} are needed",
            "too_few_rows",
            "x",
        )
    return DatasetSummary(
        kind=kind,
        arrays=_described(arrays),
        rows=sizes["x"],
        validation_rows=sizes.get("x_val"),
        vocab=vocab if kind == "tokens" else None,
    )


def _described(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {
        name: {"dtype": str(a.dtype), "shape": tuple(int(d) for d in a.shape)}
        for name, a in sorted(arrays.items())
    }


def _target(y: np.ndarray, name: str) -> str:
    if y.dtype.kind in "biu":
        if y.ndim != 1:
            raise _fail(
                f"class labels {name!r} must be 1-D [rows], got shape {y.shape}", "shape", name
            )
        return "classes"
    if y.dtype.kind == "f":
        if y.ndim not in (1, 2) or (y.ndim == 2 and not 1 <= y.shape[1] <= MAX_CLASSES):
            raise _fail(
                f"float targets {name!r} must be [rows] or [rows, outputs] with at most "
                f"{MAX_CLASSES} outputs, got shape {y.shape}",
                "shape",
                name,
            )
        return "values"
    raise _fail(f"{name!r} must hold integer labels or float targets, not {y.dtype}", "dtype", name)


def _supervised(arrays: Mapping[str, np.ndarray], kind: str) -> DatasetSummary:
    x = arrays["x"]
    if "y" not in arrays:
        raise _fail(
            f"a {kind} data set needs 'y': one class label or target per row of 'x'",
            "missing_array",
            "y",
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        have, lack = ("x_val", "y_val") if "x_val" in arrays else ("y_val", "x_val")
        raise _fail(
            f"{have!r} is given without {lack!r}: give both or neither", "missing_array", lack
        )
    target = _target(arrays["y"], "y")
    for xs, ys in (("x", "y"), ("x_val", "y_val")):
        if xs not in arrays:
            continue
        a, b = arrays[xs], arrays[ys]
        if a.dtype.kind not in "biuf":
            raise _fail(f"{xs!r} must hold numbers, not {a.dtype}", "dtype", xs)
        if a.shape[1:] != x.shape[1:]:
            raise _fail(
                f"{xs!r} rows have shape {a.shape[1:]}, but those of 'x' have {x.shape[1:]}",
                "shape",
                xs,
            )
        if _target(b, ys) != target or b.shape[1:] != arrays["y"].shape[1:]:
            raise _fail(f"{ys!r} must be of the same kind and shape as 'y'", "shape", ys)
        if len(a) != len(b):
            raise _fail(
                f"mismatched lengths: {xs!r} has {len(a)} rows but {ys!r} has {len(b)}",
                "length_mismatch",
                ys,
            )
    if len(x) < MIN_ROWS:
        raise _fail(f"'x' has {len(x)} rows; at least {MIN_ROWS} are needed", "too_few_rows", "x")
    if "x_val" in arrays and len(arrays["x_val"]) == 0:
        raise _fail("'x_val' has no rows", "too_few_rows", "x_val")
    classes = outputs = None
    if target == "classes":
        labels = [arrays[n].astype(np.int64) for n in ("y", "y_val") if n in arrays]
        low = min(int(v.min()) for v in labels)
        high = max(int(v.max()) for v in labels)
        if low < 0 or high >= MAX_CLASSES:
            raise _fail(
                f"class labels must lie in [0, {MAX_CLASSES}), found [{low}, {high}]", "values", "y"
            )
        if len(np.unique(labels[0])) < 2:
            raise _fail("'y' holds one class only; a classifier needs two or more", "values", "y")
        classes = high + 1
    else:
        outputs = 1 if arrays["y"].ndim == 1 else int(arrays["y"].shape[1])
    return DatasetSummary(
        kind=kind,
        arrays=_described(arrays),
        rows=len(x),
        validation_rows=len(arrays["x_val"]) if "x_val" in arrays else None,
        target=target,
        classes=classes,
        outputs=outputs,
    )


def summarise(arrays: Mapping[str, np.ndarray]) -> DatasetSummary:
    """Check ``arrays`` against the rules of the module docstring and summarise them.

    Raises:
        DatasetError: naming the array and the rule it breaks.
    """
    if "x" not in arrays:
        raise _fail(
            "the data set has no array 'x' (save it as numpy.savez(path, x=..., y=...))",
            "missing_array",
            "x",
        )
    _finite(arrays)
    kind = _kind(arrays["x"])
    if kind in ("tokens", "text"):
        return _sequence(arrays, kind)
    return _supervised(arrays, kind)
