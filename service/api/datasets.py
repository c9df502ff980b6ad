"""Users' data sets over REST: ``/api/v1/datasets`` (user keys) and the copy a worker fetches,
``/api/v1/worker/datasets/{sha256}`` (worker keys).

The upload is the request body itself, the ``.npz`` file's bytes (``Content-Type:
application/octet-stream``), with an optional ``name`` query parameter. It is the one route
the app's body-size middleware does not buffer: the route counts the bytes as they arrive,
into a temporary file, and answers 413 as soon as they pass ``max_dataset_bytes``; only then
is the file checked (optimizer/datasets, in the thread pool) and stored (service/datasets.py).
Every bad file is a 4xx naming the problem, with nothing stored.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from optimizer.datasets import DatasetError, DatasetSummary, Limits, PreparedUpload, prepare_upload
from optimizer.tasks.dataset_families import families_for
from service import datasets
from service.api.responses import AUTHENTICATED, errors
from service.auth import UserPrincipal, require_scope
from service.db.models import Dataset, KeyScope
from service.deps import SessionDep, SettingsDep
from service.errors import InvalidInput, PayloadTooLarge
from service.keys import Principal

__all__ = ["UPLOAD_PATH", "router", "worker_router"]

router = APIRouter(prefix="/datasets", tags=["datasets"])
worker_router = APIRouter(prefix="/worker/datasets", tags=["worker protocol"])

#: The upload route, which the body-size middleware leaves to stream (service/app.py).
UPLOAD_PATH = "/api/v1/datasets"
_SPOOL_IN_MEMORY = 1024 * 1024  # larger uploads go to a temporary file as they arrive

Worker = Annotated[Principal, Depends(require_scope(KeyScope.WORKER))]
# A name is a label: printable text, no control characters (Postgres stores no NUL).
DatasetName = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$", description="a label"),
]


class ArrayOut(BaseModel):
    dtype: str
    shape: list[int]


class DatasetOut(BaseModel):
    """A data set: its name (the sha256 of its canonical .npz), its arrays and the model
    families that can train on it with their default options."""

    sha256: str
    name: str | None
    size_bytes: int
    kind: Literal["tabular", "images", "tokens", "text"]
    arrays: dict[str, ArrayOut]
    rows: int
    validation_rows: int | None
    target: Literal["classes", "values"] | None
    classes: int | None
    outputs: int | None
    vocab: int | None
    families: list[str]
    created_at: datetime


class DatasetList(BaseModel):
    datasets: list[DatasetOut]
    total: int
    limit: int
    offset: int


def dataset_out(row: Dataset) -> DatasetOut:
    summary = DatasetSummary.from_dict(row.summary)
    return DatasetOut(
        sha256=row.sha256,
        name=row.name,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
        families=families_for(summary),
        **summary.to_dict(),
    )


async def _receive(request: Request, limit: int) -> tempfile.SpooledTemporaryFile[bytes]:
    """The request body in a temporary file, refused (413) once it passes ``limit`` bytes."""
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by the caller)
        max_size=_SPOOL_IN_MEMORY
    )
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(
                    f"the upload is larger than the limit of {limit} bytes "
                    "(the server's ACPROP_TUNER_MAX_DATASET_BYTES)",
                    headers={"Connection": "close"},
                )
            spool.write(chunk)
    except ClientDisconnect:
        spool.close()
        raise InvalidInput.at(["body"], "the upload was cut off before its end") from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _prepare(spool: tempfile.SpooledTemporaryFile[bytes], limits: Limits) -> PreparedUpload:
    try:
        return prepare_upload(spool, limits)  # type: ignore[arg-type]
    except DatasetError as exc:
        if exc.too_large:
            raise PayloadTooLarge(exc.message) from None
        loc: list[str | int] = ["body", exc.array] if exc.array else ["body"]
        raise InvalidInput([{"loc": loc, "msg": exc.message, "type": exc.code}]) from None


_ALREADY_UPLOADED: dict[int | str, dict[str, Any]] = {
    200: {"model": DatasetOut, "description": "already uploaded"}
}
_BINARY_BODY = {
    "requestBody": {
        "required": True,
        "description": "the .npz file's bytes: arrays x, y (optional for tokens and text), "
        "x_val and y_val (optional); see docs/tasks.md",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    responses={**_ALREADY_UPLOADED, **errors(*AUTHENTICATED, 413, 422)},
    openapi_extra=_BINARY_BODY,
)
async def upload_dataset(
    request: Request,
    response: Response,
    principal: UserPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    name: DatasetName = None,
) -> DatasetOut:
    """Upload a data set (an .npz): 201 with its record, or 200 with the record already
    stored when this tenant uploaded the same arrays before."""
    spool = await _receive(request, settings.max_dataset_bytes)
    try:
        limits = Limits(max_unpacked_bytes=settings.max_dataset_unpacked_bytes)
        prepared = await run_in_threadpool(_prepare, spool, limits)
    finally:
        spool.close()
    row, created = await run_in_threadpool(
        datasets.store_upload, session, principal.tenant_id, prepared, name
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    response.headers["Location"] = f"{UPLOAD_PATH}/{row.sha256}"
    return dataset_out(row)


@router.get("", response_model=DatasetList, responses=errors(*AUTHENTICATED, 422))
def list_datasets(
    principal: UserPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DatasetList:
    """The caller's data sets, newest first."""
    rows, total = datasets.list_datasets(session, principal.tenant_id, limit=limit, offset=offset)
    return DatasetList(
        datasets=[dataset_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{sha256}", response_model=DatasetOut, responses=errors(*AUTHENTICATED, 404))
def get_dataset(sha256: str, principal: UserPrincipal, session: SessionDep) -> DatasetOut:
    """One data set: its arrays, kind, targets and the families that train on it."""
    return dataset_out(
        datasets.get_dataset(session, principal.tenant_id, datasets.parse_sha256(sha256))
    )


@router.delete(
    "/{sha256}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(*AUTHENTICATED, 404, 409),
)
def delete_dataset(sha256: str, principal: UserPrincipal, session: SessionDep) -> Response:
    """Delete a data set; 409 while a queued or running job trains on it."""
    datasets.delete_dataset(session, principal.tenant_id, datasets.parse_sha256(sha256))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


_CANONICAL_NPZ: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the data set's canonical .npz (its sha256 is the name asked for)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@worker_router.get(
    "/{sha256}",
    response_class=Response,
    responses={**_CANONICAL_NPZ, **errors(*AUTHENTICATED, 404)},
)
def fetch_dataset(sha256: str, worker: Worker, session: SessionDep) -> Response:
    """A data set of the worker key's tenant, for training; a worker checks its hash."""
    name = datasets.parse_sha256(sha256)
    content = datasets.dataset_content(session, worker.tenant_id, name)
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"ETag": f'"{name}"', "Cache-Control": "no-store"},
    )
