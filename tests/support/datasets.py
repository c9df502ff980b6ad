"""Data set files for the tests: small good ones of each kind, and one bad file of every kind
the upload must refuse (each with the status and error type the API answers)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

__all__ = [
    "BAD_UPLOADS",
    "BadUpload",
    "images",
    "npz",
    "raw_npy_zip",
    "tabular",
    "text",
    "tokens",
]


def npz(*, compressed: bool = False, **arrays: Any) -> bytes:
    """The bytes of ``numpy.savez`` (or ``savez_compressed``) of ``arrays``."""
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **arrays)
    return out.getvalue()


def tabular(rows: int = 60, features: int = 4, classes: int = 3, seed: int = 0) -> dict[str, Any]:
    """Separable classes: the label is the argmax of a fixed linear map of the features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    w = np.random.default_rng(99).normal(size=(features, classes))
    return {"x": x, "y": (x @ w).argmax(axis=1).astype(np.int64)}


def images(rows: int = 40, side: int = 6, channels: int = 1, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, side, side, channels)).astype(np.float32)
    return {"x": x, "y": (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)}


def tokens(length: int = 400, vocab: int = 20, seed: int = 0) -> dict[str, Any]:
    return {"x": np.random.default_rng(seed).integers(0, vocab, length)}


def text(repeat: int = 40) -> dict[str, Any]:
    return {"x": np.array("the quick brown fox jumps over the lazy dog. " * repeat)}


def raw_npy_zip(members: dict[str, bytes]) -> bytes:
    """A zip of members written as given (to make what numpy.savez never would)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _npy(array: Any) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def _lying_header() -> bytes:
    """An .npy whose header claims 10^12 float64s (8 TB) over 16 bytes of data."""
    out = io.BytesIO()
    npy_format.write_array_header_1_0(
        out, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    return out.getvalue() + b"\0" * 16


@dataclass(frozen=True)
class BadUpload:
    name: str
    body: bytes
    status: int
    type: str


def _bad() -> list[BadUpload]:
    good = tabular()
    x, y = good["x"], good["y"]
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    inf_y = y.astype(np.float64)
    inf_y[0] = np.inf
    valid = npz(**good)
    return [
        BadUpload("not an npz", b"hello, this is not a zip file", 422, "not_npz"),
        BadUpload("empty body", b"", 422, "not_npz"),
        BadUpload("an .npy, not an .npz", _npy(x), 422, "not_npz"),
        BadUpload("truncated npz", valid[: len(valid) // 2], 422, "not_npz"),
        BadUpload(
            "object array",
            npz(x=np.array([{"a": 1}, None] * 10, dtype=object), y=np.zeros(20, int)),
            422,
            "dtype",
        ),
        BadUpload("complex x", npz(x=x.astype(np.complex64), y=y), 422, "dtype"),
        BadUpload("datetime x", npz(x=np.zeros((20, 2), "datetime64[s]"), y=y[:20]), 422, "dtype"),
        BadUpload(
            "record dtype",
            npz(x=np.zeros(20, dtype=[("a", "f4"), ("b", "i4")]), y=y[:20]),
            422,
            "dtype",
        ),
        BadUpload("5-D x", npz(x=np.zeros((20, 2, 2, 2, 2), np.float32), y=y[:20]), 422, "shape"),
        BadUpload("1-D float x", npz(x=x[:, 0], y=y), 422, "shape"),
        BadUpload("2-D class labels", npz(x=x, y=np.stack([y, y], axis=1)), 422, "shape"),
        BadUpload("NaN in x", npz(x=nan_x, y=y), 422, "non_finite"),
        BadUpload("infinity in y", npz(x=x, y=inf_y), 422, "non_finite"),
        BadUpload("mismatched lengths", npz(x=x, y=y[:-1]), 422, "length_mismatch"),
        BadUpload("too few rows", npz(x=x[:5], y=y[:5]), 422, "too_few_rows"),
        BadUpload("no x", npz(y=y), 422, "missing_array"),
        BadUpload("no y for tabular x", npz(x=x), 422, "missing_array"),
        BadUpload("x_val without y_val", npz(x=x, y=y, x_val=x[:5]), 422, "missing_array"),
        BadUpload("an unknown array", npz(x=x, y=y, z=x), 422, "unknown_array"),
        BadUpload("negative labels", npz(x=x, y=y - 5), 422, "values"),
        BadUpload("one class only", npz(x=x, y=np.zeros_like(y)), 422, "values"),
        BadUpload(
            "y for text", npz(x=np.array("abc" * 40), y=np.zeros(3)), 422, "unexpected_array"
        ),
        BadUpload("tokens over the vocabulary", npz(x=np.arange(100) * 1000), 422, "values"),
        BadUpload(
            "a header that lies about its shape",
            raw_npy_zip({"x.npy": _lying_header(), "y.npy": _npy(y)}),
            422,
            "not_npz",
        ),
        BadUpload(
            "a path in a member name",
            raw_npy_zip({"../x.npy": _npy(x), "y.npy": _npy(y)}),
            422,
            "unknown_array",
        ),
    ]


#: One bad file of every kind the upload refuses.
BAD_UPLOADS = _bad()
