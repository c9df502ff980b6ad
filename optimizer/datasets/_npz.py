"""Reading an uploaded ``.npz`` safely: bounded, never unpickling, every problem named.

An ``.npz`` is a zip archive of ``.npy`` members (what ``numpy.savez`` and
``numpy.savez_compressed`` write). Before a byte of array data is decompressed, the archive's
directory and each member's ``.npy`` header are checked: only the known array names, only
stored or deflated members, no encryption, at most :attr:`Limits.max_unpacked_bytes` in all
(the directory's sizes bound what zipfile will inflate, so a zip bomb stops there), dtypes of
plain numbers or text (never objects, records or sub-arrays), at most four dimensions, and a
header whose shape matches the member's size (numpy would otherwise allocate what the header
claims). Only then are the arrays read, with ``numpy.load(..., allow_pickle=False)``.
"""

from __future__ import annotations

import math
import struct
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["ARRAY_NAMES", "DatasetError", "Limits", "read_npz"]

#: The arrays a data set may hold: training inputs and targets, validation inputs and targets.
ARRAY_NAMES = ("x", "y", "x_val", "y_val")
#: dtype kinds accepted: booleans, integers, unsigned integers, floats, unicode text.
_KINDS = "biufU"
_MAX_DIMS = 4
_MAX_HEADER = 10_000
# The zip's central directory (46 bytes and a name per member) is parsed into Python objects
# before anything else can be checked; four short names need far less than this.
_MAX_DIRECTORY = 64 * 1024
_EOCD = struct.Struct("<4s4H2LH")  # the "end of central directory" record
_EOCD_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE = 20


class DatasetError(ValueError):
    """An upload that is not an acceptable data set; the message says what and how to fix it.

    Attributes:
        code: a short machine-readable kind (``not_npz``, ``too_large``, ``dtype``, ``shape``,
            ``non_finite``, ``length_mismatch``, ``too_few_rows``, ...).
        array: the array concerned (``x``, ``y``, ``x_val``, ``y_val``), or None.
        too_large: a size limit was exceeded (the API answers 413, else 422).
    """

    def __init__(
        self, message: str, *, code: str, array: str | None = None, too_large: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.array = array
        self.too_large = too_large


@dataclass(frozen=True)
class Limits:
    """How large a data set may be once unpacked (the arrays' bytes, headers included)."""

    max_unpacked_bytes: int = 64 * 1024 * 1024


def _not_npz(reason: str) -> DatasetError:
    return DatasetError(
        "the upload is not an .npz file (a zip archive of .npy arrays, as numpy.savez or "
        f"numpy.savez_compressed write): {reason}",
        code="not_npz",
    )


def _member_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    stem = name[:-4] if name.endswith(".npy") else None
    if stem not in ARRAY_NAMES:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise DatasetError(
            f"unknown array {shown!r} in the archive: a data set holds only "
            f"{', '.join(ARRAY_NAMES)} (saved as numpy.savez(path, x=..., y=...))",
            code="unknown_array",
        )
    if info.flag_bits & 0x1:
        raise DatasetError(f"array {stem!r} is encrypted", code="not_npz", array=stem)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DatasetError(
            f"array {stem!r} uses a compression other than deflate (what numpy writes)",
            code="not_npz",
            array=stem,
        )
    return stem


def _check_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """The member's .npy header: version, dtype, dimensions, and a size that matches."""
    with archive.open(info) as member:
        try:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(member, _MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(member, _MAX_HEADER)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # numpy's header parser on hostile bytes
            raise DatasetError(
                f"array {name!r} is not a .npy array: {_short(exc)}", code="not_npz", array=name
            ) from None
        header_bytes = member.tell()
    del fortran  # either order is read correctly by numpy.load
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise DatasetError(
            f"array {name!r} has dtype {dtype}: object, record and sub-array dtypes are not "
            "accepted (use plain numbers, or a unicode string array for text)",
            code="dtype",
            array=name,
        )
    if dtype.kind not in _KINDS:
        raise DatasetError(
            f"array {name!r} has dtype {dtype}: use integers, floats, booleans or unicode text",
            code="dtype",
            array=name,
        )
    if len(shape) > _MAX_DIMS:
        raise DatasetError(
            f"array {name!r} has {len(shape)} dimensions; at most {_MAX_DIMS} are accepted",
            code="shape",
            array=name,
        )
    expected = math.prod(shape) * dtype.itemsize + header_bytes
    if expected != info.file_size:
        raise DatasetError(
            f"array {name!r}: its header describes {expected} bytes but the archive holds "
            f"{info.file_size}",
            code="not_npz",
            array=name,
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_directory(file: IO[bytes]) -> None:
    """Bound the central directory before zipfile parses it: found where zipfile looks for
    it (the last 22 bytes, else the last 64 KiB), at most four entries in at most
    ``_MAX_DIRECTORY`` bytes, and no zip64 end record (which would override both)."""
    size = file.seek(0, 2)
    tail_start = max(0, size - (1 << 16) - _EOCD.size)
    file.seek(tail_start)
    tail = file.read()
    if tail[-_EOCD.size : -_EOCD.size + 4] == _EOCD_SIGNATURE and tail[-2:] == b"\0\0":
        at = len(tail) - _EOCD.size
    else:
        at = tail.rfind(_EOCD_SIGNATURE)
        if at < 0 or len(tail) - at < _EOCD.size:
            raise _not_npz("no zip directory found")
    fields = _EOCD.unpack(tail[at : at + _EOCD.size])
    entries, directory_bytes = fields[4], fields[5]
    locator = tail_start + at - _ZIP64_LOCATOR_SIZE
    if locator >= 0:
        file.seek(locator)
        if file.read(4) == _ZIP64_LOCATOR:
            raise _not_npz("zip64 archives are not accepted (numpy writes none this small)")
    if entries > len(ARRAY_NAMES) or directory_bytes > _MAX_DIRECTORY:
        raise _not_npz(
            f"its directory lists {entries} members in {directory_bytes} bytes; "
            f"at most {len(ARRAY_NAMES)} arrays are allowed"
        )
    file.seek(0)


def read_npz(file: IO[bytes], limits: Limits) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` in ``file`` (seekable), checked as the module says.

    Raises:
        DatasetError: naming the problem (``too_large`` set for a size over the limit).
    """
    _check_directory(file)
    try:
        archive = zipfile.ZipFile(file)
    except Exception as exc:  # BadZipFile, struct and decoding errors on hostile bytes
        raise _not_npz(_short(exc)) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > len(ARRAY_NAMES):
            raise _not_npz(f"it has {len(infos)} members; at most {len(ARRAY_NAMES)} are allowed")
        names = [_member_name(info) for info in infos]
        if len(set(names)) != len(names):
            raise _not_npz("an array name appears twice")
        unpacked = sum(info.file_size for info in infos)
        if unpacked > limits.max_unpacked_bytes:
            raise DatasetError(
                f"the arrays unpack to {unpacked} bytes, over the limit of "
                f"{limits.max_unpacked_bytes} bytes",
                code="too_large",
                too_large=True,
            )
        try:
            for info, name in zip(infos, names, strict=True):
                _check_header(archive, info, name)
        except DatasetError:
            raise
        except Exception as exc:  # zipfile and zlib on hostile bytes: see below
            raise _not_npz(_short(exc)) from None
    file.seek(0)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(file, allow_pickle=False) as npz:
            for name in names:
                arrays[name] = np.asarray(npz[name])
    except Exception as exc:
        # A corrupt member (bad CRC, a broken deflate stream, truncated data) shows only when
        # it is read, as whichever error zipfile, zlib or numpy raise for it (BadZipFile,
        # zlib.error, EOFError, ValueError, ...): each means the same to the uploader.
        raise _not_npz(_short(exc)) from None
    return arrays
