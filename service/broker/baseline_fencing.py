"""Fencing of baseline runs: which of the tokens a worker sends still hold their run.

The rules are a trial lease's (fencing.py): a lease is live while it has not ended and has
not expired; a write whose token's lease is not live changes nothing and is answered 409,
unless that lease ended because this very write already happened (a retried call); tokens of
another tenant's leases are as lost as made-up ones. Leases of cancelled and failed jobs end
at the next write that names them, their runs back to waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.broker.fencing import EndReason
from service.broker.tokens import hash_token
from service.db.models import BaselineLease, BaselineRun, Job, JobStatus, TrialState

__all__ = ["HeldRun", "end_baseline_leases", "end_leases_of_ended_jobs", "load_baseline_leases"]

_ENDED_JOBS = (JobStatus.CANCELLED.value, JobStatus.FAILED.value)


@dataclass(frozen=True, slots=True)
class HeldRun:
    """A baseline lease looked up by its token, with what fencing and write checks need of
    its run and job (``job_seeds``: the run's seed count; ``job_steps``: the job's steps;
    ``created_at``: when it was granted, no result can report more seconds than since)."""

    token: str
    lease_id: int
    run_id: int
    attempt: int
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    created_at: datetime
    job_id: uuid.UUID
    job_status: str
    run_state: str
    run_number: int
    worker_id: str
    job_seeds: int
    job_steps: int

    def live(self, now: datetime) -> bool:
        return self.ended_at is None and self.expires_at > now

    def ended_by(self, reason: EndReason) -> bool:
        return self.ended_at is not None and self.end_reason == reason.value


def load_baseline_leases(
    session: Session, tokens: Iterable[str], *, tenant_id: uuid.UUID, lock: bool = False
) -> dict[str, HeldRun]:
    """The baseline leases of these tokens held for jobs of ``tenant_id``, by token; with
    ``lock`` the lease rows stay locked until the transaction ends (the reaper skips them)."""
    by_hash = {hash_token(t): t for t in tokens}
    if not by_hash:
        return {}
    stmt: Any = (
        select(
            BaselineLease.token_hash,
            BaselineLease.id,
            BaselineLease.run_id,
            BaselineLease.attempt,
            BaselineLease.expires_at,
            BaselineLease.ended_at,
            BaselineLease.end_reason,
            BaselineLease.created_at,
            BaselineLease.worker_id,
            BaselineRun.job_id,
            Job.status,
            BaselineRun.state,
            BaselineRun.number,
            BaselineRun.seeds,
            Job.steps,
        )
        .join(BaselineRun, BaselineRun.id == BaselineLease.run_id)
        .join(Job, Job.id == BaselineRun.job_id)
        .where(BaselineLease.token_hash.in_(list(by_hash)), Job.tenant_id == tenant_id)
        .order_by(BaselineLease.id)
    )
    if lock:
        stmt = stmt.with_for_update(of=BaselineLease)
    out = {}
    for row in session.execute(stmt):
        token = by_hash[row.token_hash]
        out[token] = HeldRun(
            token=token,
            lease_id=row.id,
            run_id=row.run_id,
            attempt=row.attempt,
            expires_at=row.expires_at,
            ended_at=row.ended_at,
            end_reason=row.end_reason,
            created_at=row.created_at,
            job_id=row.job_id,
            job_status=row.status,
            run_state=row.state,
            run_number=row.number,
            worker_id=row.worker_id,
            job_seeds=len(row.seeds),
            job_steps=row.steps,
        )
    return out


def end_baseline_leases(
    session: Session, lease_ids: Sequence[int], reason: EndReason, now: datetime
) -> None:
    """End these leases (those not already ended) for ``reason``."""
    session.execute(
        update(BaselineLease)
        .where(BaselineLease.id.in_(list(lease_ids)), BaselineLease.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason.value)
    )


def end_leases_of_ended_jobs(
    session: Session, leases: Sequence[HeldRun], now: datetime
) -> list[str]:
    """End the live leases of cancelled and failed jobs (their runs go back to waiting);
    returns their tokens, and those of leases already ended that way (a repeat)."""
    out: list[str] = []
    ending: list[HeldRun] = []
    for lease in leases:
        if lease.job_status not in _ENDED_JOBS:
            continue
        if lease.ended_at is None:
            ending.append(lease)
            out.append(lease.token)
        elif lease.ended_by(EndReason.CANCELLED):
            out.append(lease.token)
    if ending:
        end_baseline_leases(session, [le.lease_id for le in ending], EndReason.CANCELLED, now)
        session.execute(
            update(BaselineRun)
            .where(
                BaselineRun.id.in_([le.run_id for le in ending]),
                BaselineRun.state == TrialState.RUNNING.value,
            )
            .values(state=TrialState.WAITING.value, attempt=BaselineRun.attempt + 1)
        )
    return out
