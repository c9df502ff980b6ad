"""Fencing: which of the tokens a worker sends still hold their trial.

A lease is *live* while it has not ended and has not expired. A write carrying a token whose
lease is not live must change nothing (the worker is answered 409 and drops that trial),
except where the lease ended because this very write already happened once (a retried HTTP
call), which is answered as before. Expired-but-not-yet-reaped leases are already not live:
the reaper's period must not lengthen a lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.broker.tokens import hash_token
from service.db.models import Job, Lease, Trial

__all__ = ["EndReason", "HeldLease", "LeasesLost", "load_leases"]


class EndReason(StrEnum):
    """Why a lease ended (`leases.end_reason`)."""

    COMPLETED = "completed"  # the worker's result was accepted
    EXPIRED = "expired"  # not renewed in time; counts against max_attempts
    RELEASED = "released"  # given back by a stopping worker; not counted
    CANCELLED = "cancelled"  # the job was cancelled, or failed
    FAILED = "failed"  # the worker could not build or train the trial's task


class LeasesLost(Exception):
    """Some tokens of a write no longer hold their trial; nothing was changed."""

    def __init__(self, lost: Iterable[str]) -> None:
        self.lost = sorted(set(lost))
        super().__init__(f"{len(self.lost)} lease(s) no longer held")


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A lease looked up by its token, with what fencing decisions need of its trial and job,
    and the job's schedule that every write is checked against (seeds, steps, cadence)."""

    token: str
    lease_id: int
    trial_id: int
    attempt: int
    created_at: datetime  # when it was granted: no write can report more time than since
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    job_id: uuid.UUID
    job_status: str
    trial_state: str
    trial_number: int
    worker_id: str
    job_seeds: int
    job_steps: int
    job_report_every: int

    @classmethod
    def from_row(cls, token: str, row: Any) -> HeldLease:
        """From a row of `load_leases`' columns (or the report fast path's, the same names)."""
        return cls(
            token=token,
            lease_id=row.id,
            trial_id=row.trial_id,
            attempt=row.attempt,
            created_at=row.created_at,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            job_id=row.job_id,
            job_status=row.status,
            trial_state=row.state,
            trial_number=row.number,
            worker_id=row.worker_id,
            job_seeds=row.seeds,
            job_steps=row.steps,
            job_report_every=row.report_every,
        )

    def live(self, now: datetime) -> bool:
        return self.ended_at is None and self.expires_at > now

    def ended_by(self, reason: EndReason) -> bool:
        return self.ended_at is not None and self.end_reason == reason.value


def load_leases(
    session: Session, tokens: Iterable[str], *, tenant_id: uuid.UUID, lock: bool = False
) -> dict[str, HeldLease]:
    """The leases of these tokens held for jobs of `tenant_id` (the worker key's tenant), by
    token; unknown tokens, and tokens of another tenant's leases, are absent: to a worker of
    another tenant a valid token is as lost as a made-up one.

    With `lock`, the lease rows are locked (FOR UPDATE) until the transaction ends, so the
    reaper (which claims with SKIP LOCKED) cannot end them under a write.
    """
    by_hash = {hash_token(t): t for t in tokens}
    if not by_hash:
        return {}
    stmt = (
        select(
            Lease.token_hash,
            Lease.id,
            Lease.trial_id,
            Lease.attempt,
            Lease.created_at,
            Lease.expires_at,
            Lease.ended_at,
            Lease.end_reason,
            Lease.worker_id,
            Trial.job_id,
            Job.status,
            Trial.state,
            Trial.number,
            Job.seeds,
            Job.steps,
            Job.report_every,
        )
        .join(Trial, Trial.id == Lease.trial_id)
        .join(Job, Job.id == Trial.job_id)
        .where(Lease.token_hash.in_(list(by_hash)), Job.tenant_id == tenant_id)
        .order_by(Lease.id)
    )
    if lock:
        stmt = stmt.with_for_update(of=Lease)
    return {
        by_hash[row.token_hash]: HeldLease.from_row(by_hash[row.token_hash], row)
        for row in session.execute(stmt)
    }
