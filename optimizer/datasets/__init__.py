"""Users' own data sets: the ``.npz`` format, its checks, its canonical form and hash.

jax-free (numpy only): the API process checks uploads with it and workers read their copies
with it. A data set holds ``x`` and, for supervised data, ``y``, optionally with ``x_val`` and
``y_val`` (see :mod:`optimizer.datasets._content` for what each kind must be, and
docs/tasks.md for the model families that train on them).
"""

from optimizer.datasets._canonical import (
    SHA256_PATTERN,
    Dataset,
    PreparedUpload,
    canonical_npz,
    is_sha256,
    load_dataset,
    prepare_upload,
)
from optimizer.datasets._content import (
    MAX_CLASSES,
    MAX_VOCAB,
    MIN_ROWS,
    MIN_TOKENS,
    DatasetSummary,
    summarise,
)
from optimizer.datasets._npz import ARRAY_NAMES, DatasetError, Limits, read_npz

__all__ = [
    "ARRAY_NAMES",
    "MAX_CLASSES",
    "MAX_VOCAB",
    "MIN_ROWS",
    "MIN_TOKENS",
    "SHA256_PATTERN",
    "Dataset",
    "DatasetError",
    "DatasetSummary",
    "Limits",
    "PreparedUpload",
    "canonical_npz",
    "is_sha256",
    "load_dataset",
    "prepare_upload",
    "read_npz",
    "summarise",
]
