"""The client's calls for users' data sets (``/api/v1/datasets``) and their typed result.

A data set is an ``.npz`` with ``x`` and, for tabular or image data, ``y`` (optionally
``x_val`` and ``y_val``); the service checks it, stores its canonical form and names it by
that form's SHA-256, which a job then names in its task options
(``{"name": "mlp", "options": {"dataset": sha256}}``). See docs/tasks.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from acprop_tuner.client._transport import Transport

__all__ = ["Dataset", "DatasetCalls"]


@dataclass(frozen=True)
class Dataset:
    """An uploaded data set: its name (``sha256``), label, arrays (``{"x": {"dtype",
    "shape"}, ...}``), kind (``tabular``, ``images``, ``tokens``, ``text``), targets, and the
    model families that train on it with their default options."""

    sha256: str
    name: str | None
    size_bytes: int
    kind: str
    arrays: Mapping[str, Mapping[str, Any]]
    rows: int
    validation_rows: int | None
    target: str | None
    classes: int | None
    outputs: int | None
    vocab: int | None
    families: tuple[str, ...]
    created_at: datetime
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Dataset:
        return cls(
            sha256=str(data["sha256"]),
            name=data.get("name"),
            size_bytes=int(data["size_bytes"]),
            kind=str(data["kind"]),
            arrays={k: dict(v) for k, v in data["arrays"].items()},
            rows=int(data["rows"]),
            validation_rows=data.get("validation_rows"),
            target=data.get("target"),
            classes=data.get("classes"),
            outputs=data.get("outputs"),
            vocab=data.get("vocab"),
            families=tuple(data.get("families") or ()),
            created_at=datetime.fromisoformat(data["created_at"]),
            raw=data,
        )


def _path(sha256: str) -> str:
    if not sha256:
        raise ValueError("a data set's sha256 is needed")
    return f"/datasets/{quote(sha256, safe='')}"


class DatasetCalls:
    """The data set calls of :class:`~acprop_tuner.client.TunerClient`."""

    _transport: Transport

    def upload_dataset(
        self, file: str | os.PathLike[str] | bytes, *, name: str | None = None
    ) -> Dataset:
        """Upload an ``.npz`` (a path, or its bytes); returns the stored data set.

        Uploading the same arrays again returns the data set already stored (content
        addressed), so this call is safe to retry and is retried like a GET.

        Raises:
            InvalidRequest: 422 naming what is wrong with the file (``fields`` gives the
                array, e.g. ``body.x``), or 413 when it is over the server's size limits.
        """
        content = file if isinstance(file, bytes) else Path(file).read_bytes()
        params = {"name": name} if name is not None else None
        data = self._transport.json(
            "POST",
            "/datasets",
            content=content,
            params=params,
            headers={"Content-Type": "application/octet-stream"},
        )
        return Dataset.from_json(data)

    def datasets(self, *, page_size: int = 50) -> Iterator[Dataset]:
        """The caller's data sets, newest first, fetched page by page."""
        offset = 0
        while True:
            page = self._transport.json(
                "GET", "/datasets", params={"limit": page_size, "offset": offset}
            )
            yield from (Dataset.from_json(d) for d in page["datasets"])
            offset += len(page["datasets"])
            if not page["datasets"] or offset >= page["total"]:
                return

    def dataset(self, sha256: str) -> Dataset:
        """One data set (404 :class:`NotFound` for another tenant's, as for none)."""
        return Dataset.from_json(self._transport.json("GET", _path(sha256)))

    def delete_dataset(self, sha256: str) -> None:
        """Delete a data set.

        Raises:
            Conflict: a queued or running job trains on it (``detail["jobs"]`` lists them).
        """
        self._transport.request("DELETE", _path(sha256), gone_after_retry_ok=True)
