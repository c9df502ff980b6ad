"""Users' data sets: storing a checked upload, listing, reading, deleting, the copy a worker
fetches, and the check a job's data set passes at submission.

Every query is scoped by tenant: another tenant's data set is a 404, exactly like one that
does not exist. An upload is content-addressed (optimizer/datasets): the same arrays uploaded
again by the same tenant return the stored record (its first name kept), never a second one.
A data set that a queued or running job of the tenant trains on cannot be deleted (409 naming
the jobs); deletion and job submission both lock the tenant's row, so neither can slip past
the other.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from optimizer.datasets import DatasetSummary, PreparedUpload, is_sha256
from optimizer.job_spec import TaskChoice
from optimizer.tasks.dataset_families import dataset_problem
from optimizer.tasks.registry import task_dataset
from service.db.models import Dataset, Job, JobStatus, Tenant
from service.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "check_job_dataset",
    "dataset_content",
    "delete_dataset",
    "get_dataset",
    "list_datasets",
    "parse_sha256",
    "store_upload",
]


def parse_sha256(raw: str) -> str:
    """A data set's name from a URL (hex digits in either case), or 404."""
    value = raw.lower()
    if not is_sha256(value):
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise NotFound(f"no data set {shown!r}: data sets are named by their sha256")
    return value


def _missing(sha256: str) -> NotFound:
    return NotFound(
        f"no data set {sha256} for this tenant; upload it first (POST /api/v1/datasets)"
    )


def _end_read(session: Session) -> None:
    """End a read transaction, keeping the rows read (a rollback would expire them)."""
    session.expunge_all()
    session.rollback()


def _owned(session: Session, tenant_id: uuid.UUID, sha256: str) -> Dataset:
    row = session.scalar(
        select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    )
    if row is None:
        raise _missing(sha256)
    return row


def store_upload(
    session: Session, tenant_id: uuid.UUID, upload: PreparedUpload, name: str | None
) -> tuple[Dataset, bool]:
    """Store a checked upload; returns the record and whether it is new (False: this tenant
    already had these arrays)."""
    existing = session.scalar(
        select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == upload.sha256)
    )
    if existing is not None:
        _end_read(session)
        return existing, False
    row = Dataset(
        tenant_id=tenant_id,
        sha256=upload.sha256,
        name=name,
        summary=upload.summary.to_dict(),
        size_bytes=len(upload.blob),
        content=upload.blob,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # the same upload, concurrently: the first one stored it
        session.rollback()
        found = _owned(session, tenant_id, upload.sha256)
        _end_read(session)
        return found, False
    return row, True


def list_datasets(
    session: Session, tenant_id: uuid.UUID, *, limit: int, offset: int
) -> tuple[list[Dataset], int]:
    """The tenant's data sets, newest first, and how many there are."""
    total = session.scalar(
        select(func.count()).select_from(Dataset).where(Dataset.tenant_id == tenant_id)
    )
    rows = session.scalars(
        select(Dataset)
        .where(Dataset.tenant_id == tenant_id)
        .order_by(Dataset.created_at.desc(), Dataset.id)
        .limit(limit)
        .offset(offset)
    ).all()
    _end_read(session)
    return list(rows), int(total or 0)


def get_dataset(session: Session, tenant_id: uuid.UUID, sha256: str) -> Dataset:
    row = _owned(session, tenant_id, sha256)
    _end_read(session)
    return row


def _jobs_using(session: Session, tenant_id: uuid.UUID, sha256: str) -> list[str]:
    jobs = session.scalars(
        select(Job).where(
            Job.tenant_id == tenant_id,
            Job.status.in_([s.value for s in JobStatus.active()]),
        )
    ).all()
    return sorted(
        str(j.id) for j in jobs if task_dataset(j.spec.task.name, j.spec.task.options) == sha256
    )


def delete_dataset(session: Session, tenant_id: uuid.UUID, sha256: str) -> None:
    """Delete a data set; 409 while a queued or running job trains on it."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    try:
        row = _owned(session, tenant_id, sha256)
        users = _jobs_using(session, tenant_id, sha256)
        if users:
            raise Conflict(
                {
                    "message": f"data set {sha256} is used by {len(users)} queued or running "
                    "job(s); cancel them or wait for them to end, then delete it",
                    "jobs": users,
                }
            )
        session.delete(row)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def dataset_content(session: Session, tenant_id: uuid.UUID, sha256: str) -> bytes:
    """The canonical bytes of a data set of the tenant (for its workers), or 404."""
    content = session.scalar(
        select(Dataset.content).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    )
    session.rollback()
    if content is None:
        raise _missing(sha256)
    return bytes(content)


def check_job_dataset(session: Session, tenant_id: uuid.UUID, task: TaskChoice) -> None:
    """A job's data set must be the tenant's (404 otherwise, as for any other tenant's
    resource) and of a kind and shape its family trains on (422 naming the option)."""
    sha256 = task_dataset(task.name, task.options)
    if sha256 is None:
        return
    summary: Any = session.scalar(
        select(Dataset.summary).where(Dataset.tenant_id == tenant_id, Dataset.sha256 == sha256)
    )
    if summary is None:
        raise _missing(sha256)
    problem = dataset_problem(task.name, task.options, DatasetSummary.from_dict(summary))
    if problem is not None:
        raise InvalidInput.at(["body", "task", "options", "dataset"], problem)
