"""The worker's copies of users' data sets: fetched by hash over HTTP with the worker key,
checked against the hash, kept in a bounded cache directory and checked again when read.

A job on a user's data set names it by the SHA-256 of its canonical ``.npz``
(optimizer/datasets). The worker asks its server for those bytes
(``GET /api/v1/worker/datasets/{sha256}``: the server answers only for the worker key's own
tenant), refuses any copy whose hash differs, and keeps it as ``<sha256>.npz`` in the cache
directory, so later populations, restarts and other workers on the machine read it from disk.
A copy on disk is hashed again before it is used (a damaged one is fetched anew); when the
directory holds more than its bound, the copies used least recently are removed. Writes are
atomic (a temporary file, then a rename), so workers sharing the directory never read half a
file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from optimizer.datasets import Dataset, DatasetError, is_sha256, load_dataset
from worker.client import DATASETS, ProtocolError, WorkerClient

__all__ = [
    "CACHE_BYTES_ENV",
    "CACHE_DIR_ENV",
    "DEFAULT_CACHE_BYTES",
    "MAX_DOWNLOAD_BYTES",
    "DatasetCache",
    "DatasetUnavailable",
    "default_cache_dir",
    "http_fetch",
]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "ACPROP_TUNER_DATASET_CACHE_DIR"
CACHE_BYTES_ENV = "ACPROP_TUNER_DATASET_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 4 * 1024**3
#: The largest data set a server can hold (the upper bound of its size settings).
MAX_DOWNLOAD_BYTES = 1024**3

Fetch = Callable[[str, BinaryIO], None]


class DatasetUnavailable(Exception):
    """The data set cannot be had: the server has none of that name for this worker's tenant,
    or it sent bytes that are not that data set. Its trials fail with this reason."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/acprop-tuner/datasets`` (``~/.cache/...`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "acprop-tuner" / "datasets"


def http_fetch(client: WorkerClient) -> Fetch:
    """Fetch from the server with the worker key (retried as every protocol call is)."""

    def fetch(sha256: str, out: BinaryIO) -> None:
        try:
            client.download(f"{DATASETS}/{sha256}", out, MAX_DOWNLOAD_BYTES)
        except ProtocolError as exc:  # 404: not a data set of this worker key's tenant
            raise DatasetUnavailable(
                f"the server has no data set {sha256} for this worker's tenant ({exc})"
            ) from None

    return fetch


class DatasetCache:
    """Data sets by hash: from the cache directory when a verified copy is there, else from
    ``fetch(sha256, out)``, which writes the server's bytes to ``out``."""

    def __init__(self, directory: Path, max_bytes: int, fetch: Fetch) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._fetch = fetch
        #: Copies fetched from the server in this process's life (for logs and tests).
        self.downloads = 0

    def _path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.npz"

    def load(self, sha256: str) -> Dataset:
        """The data set named ``sha256``, verified.

        Raises:
            DatasetUnavailable: see the class (also from ``fetch``).
            worker.client.ServerUnavailable: the server did not answer (try again later).
        """
        if not is_sha256(sha256):
            raise DatasetUnavailable(f"{sha256!r} is not a data set's sha256")
        cached = self._read(sha256)
        if cached is not None:
            return cached
        out = io.BytesIO()
        self._fetch(sha256, out)
        self.downloads += 1
        blob = out.getvalue()
        try:
            dataset = load_dataset(blob, sha256)
        except DatasetError as exc:
            raise DatasetUnavailable(f"data set {sha256} from the server: {exc}") from None
        log.info("fetched data set %s (%d bytes)", sha256, len(blob))
        self._store(sha256, blob)
        return dataset

    def _read(self, sha256: str) -> Dataset | None:
        path = self._path(sha256)
        try:
            blob = path.read_bytes()
        except OSError:  # not there (or evicted by another worker just now)
            return None
        try:
            dataset = load_dataset(blob, sha256)
        except DatasetError as exc:
            log.warning(
                "cached copy of data set %s is damaged (%s); fetching it again", sha256, exc
            )
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        return dataset

    def _store(self, sha256: str, blob: bytes) -> None:
        if len(blob) > self.max_bytes:
            log.info("data set %s is larger than the cache bound; not kept on disk", sha256)
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=".part-", delete=False
            ) as tmp:
                tmp.write(blob)
            os.replace(tmp.name, self._path(sha256))
        except OSError as exc:
            log.warning("cannot keep data set %s in %s: %s", sha256, self.directory, exc)
            return
        self._evict(keep=self._path(sha256))

    def _evict(self, keep: Path) -> None:
        """Remove the least recently used copies until the directory is within its bound."""
        entries = []
        for path in self.directory.glob("*.npz"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                return
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
