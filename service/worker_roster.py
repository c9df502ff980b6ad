"""The workers serving a tenant, as a user sees them: what the server recorded of each
(service/broker/workers.py) and how many trials each holds now (its live leases)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import Job, Lease, Trial, Worker

__all__ = ["WorkerView", "tenant_workers"]


@dataclass(frozen=True, slots=True)
class WorkerView:
    worker: Worker
    trials_held: int


def tenant_workers(
    session: Session, tenant_id: uuid.UUID, *, now: datetime, limit: int
) -> tuple[list[WorkerView], int]:
    """The tenant's workers, the most recently seen first (at most `limit`), and how many
    there are."""
    total = (
        session.scalar(
            select(func.count()).select_from(Worker).where(Worker.tenant_id == tenant_id)
        )
        or 0
    )
    workers = list(
        session.scalars(
            select(Worker)
            .where(Worker.tenant_id == tenant_id)
            .order_by(Worker.last_seen_at.desc(), Worker.worker_id)
            .limit(limit)
        )
    )
    held: dict[str, int] = {}
    if workers:
        held = dict(
            session.execute(  # type: ignore[arg-type]
                select(Lease.worker_id, func.count())
                .join(Trial, Trial.id == Lease.trial_id)
                .join(Job, Job.id == Trial.job_id)
                .where(
                    Job.tenant_id == tenant_id,
                    Lease.ended_at.is_(None),
                    Lease.expires_at > now,
                    Lease.worker_id.in_([w.worker_id for w in workers]),
                )
                .group_by(Lease.worker_id)
            ).all()
        )
    session.expunge_all()
    session.rollback()
    return [WorkerView(w, held.get(w.worker_id, 0)) for w in workers], total
