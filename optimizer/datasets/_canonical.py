"""A data set's canonical form, its content address, and the two ways in: an upload (checked,
then made canonical) and a stored copy (its hash verified before anything is parsed).

The canonical form is the ``.npz`` the service stores and serves: the arrays in name order,
each a little-endian, C-ordered ``.npy`` (format 1.0), stored uncompressed in a zip with fixed
timestamps and attributes, so the same arrays always give the same bytes whatever the upload
looked like (``savez`` or ``savez_compressed``, any byte order, any member order). A data set
is named by the SHA-256 of those bytes: ``sha256sum`` of a downloaded copy gives its name, and
a worker checks a copy before it reads one array from it.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from optimizer.datasets._content import DatasetSummary, summarise
from optimizer.datasets._npz import DatasetError, Limits, read_npz

__all__ = [
    "SHA256_PATTERN",
    "Dataset",
    "PreparedUpload",
    "canonical_npz",
    "is_sha256",
    "load_dataset",
    "prepare_upload",
]

#: A data set's name: the lowercase hex SHA-256 of its canonical form.
SHA256_PATTERN = "^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold
_UNIX = 3


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and _SHA256.match(value) is not None


def canonical_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The canonical ``.npz`` of ``arrays`` (see the module docstring)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            a = arrays[name]
            a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
            member = io.BytesIO()
            npy_format.write_array(member, a, version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = _UNIX
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return out.getvalue()


@dataclass(frozen=True)
class PreparedUpload:
    """An upload that passed every check: its name, summary and canonical bytes."""

    sha256: str
    summary: DatasetSummary
    blob: bytes


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set's arrays (read-only mappings of numpy arrays), its name and summary."""

    sha256: str
    arrays: Mapping[str, np.ndarray]
    summary: DatasetSummary


def prepare_upload(file: IO[bytes], limits: Limits) -> PreparedUpload:
    """Read, check and canonicalise an uploaded ``.npz`` (``file`` must be seekable).

    Raises:
        DatasetError: the first problem found.
    """
    arrays = read_npz(file, limits)
    summary = summarise(arrays)
    blob = canonical_npz(arrays)
    return PreparedUpload(hashlib.sha256(blob).hexdigest(), summary, blob)


def load_dataset(blob: bytes, sha256: str) -> Dataset:
    """The data set in ``blob``, a canonical copy that must hash to ``sha256``.

    Raises:
        DatasetError: ``code == "hash_mismatch"`` when the bytes are not the data set named
            (nothing was parsed), or the problem that made them unreadable.
    """
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise DatasetError(
            f"the copy of data set {sha256} hashes to {actual}: it is not that data set",
            code="hash_mismatch",
        )
    # Stored uncompressed: the arrays unpack to less than the copy's own size.
    arrays = read_npz(io.BytesIO(blob), Limits(max_unpacked_bytes=len(blob)))
    frozen = {}
    for name, a in arrays.items():
        a.setflags(write=False)
        frozen[name] = a
    return Dataset(sha256, MappingProxyType(frozen), summarise(arrays))
