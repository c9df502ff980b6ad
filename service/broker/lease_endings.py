"""How leases end short of a completion: heartbeats that find them gone, releases, and the
leases of jobs that ended (cancelled by their user, or failed).

Each call is one transaction over all its tokens, committed at once. Releases are fenced
(fencing.py): a token that no longer holds its trial makes the call raise `LeasesLost` and
change nothing; a repeated release answers as the first did. Heartbeats never raise: they
report what was lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.broker.fencing import EndReason, HeldLease, LeasesLost, load_leases
from service.broker.workers import Sightings, record_seen
from service.db.models import Job, JobStatus, Lease, Trial, TrialState

__all__ = [
    "end_leases",
    "end_leases_of_ended_job",
    "end_leases_of_ended_jobs",
    "heartbeat",
    "release",
]

#: Job statuses whose leases end at the next write that names them.
_ENDED_JOBS = (JobStatus.CANCELLED.value, JobStatus.FAILED.value)


def end_leases(
    session: Session, lease_ids: Sequence[int], reason: EndReason, now: datetime
) -> None:
    """End these leases (those not already ended) for `reason`."""
    session.execute(
        update(Lease)
        .where(Lease.id.in_(list(lease_ids)), Lease.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason.value)
    )


def end_leases_of_ended_jobs(
    session: Session, leases: Sequence[HeldLease], now: datetime
) -> list[str]:
    """End the live leases of cancelled and failed jobs (their trials go back to waiting,
    unfinished); returns their tokens. Leases already ended that way are included, so a
    repeated call answers the same."""
    out: list[str] = []
    ending: list[HeldLease] = []
    for lease in leases:
        if lease.job_status not in _ENDED_JOBS:
            continue
        if lease.ended_at is None:
            ending.append(lease)
            out.append(lease.token)
        elif lease.ended_by(EndReason.CANCELLED):
            out.append(lease.token)
    if ending:
        end_leases(session, [le.lease_id for le in ending], EndReason.CANCELLED, now)
        session.execute(
            update(Trial)
            .where(Trial.id.in_([le.trial_id for le in ending]), Trial.state == "running")
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1)
        )
    return out


def end_leases_of_ended_job(session: Session, job_id: uuid.UUID, now: datetime) -> int:
    """End every live lease of one cancelled or failed job at once, without waiting for its
    workers to call again (a local run whose worker it has stopped): their trials return to
    waiting, as at the next write of a worker. Takes the job's row lock first, as every writer
    of a job's trials does; commits. Returns how many leases it ended (0 for a job that has
    not ended)."""
    status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
    if status not in _ENDED_JOBS:
        session.rollback()
        return 0
    live = session.execute(
        select(Lease.id, Lease.trial_id)
        .join(Trial, Trial.id == Lease.trial_id)
        .where(Trial.job_id == job_id, Lease.ended_at.is_(None))
        .with_for_update(of=Lease)
    ).all()
    if live:
        end_leases(session, [row.id for row in live], EndReason.CANCELLED, now)
        session.execute(
            update(Trial)
            .where(Trial.id.in_([row.trial_id for row in live]), Trial.state == "running")
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1)
        )
    session.commit()
    return len(live)


def heartbeat(
    session: Session,
    tenant_id: uuid.UUID,
    tokens: Sequence[str],
    *,
    ttl_s: float,
    now: datetime,
    sightings: Sightings | None = None,
) -> tuple[list[str], list[str], datetime]:
    """Renew the live leases among `tokens`; returns (held, lost, new expiry) and commits.
    The workers holding them were seen now (written when `sightings` says it is due)."""
    leases = load_leases(session, tokens, tenant_id=tenant_id, lock=True)
    ended = set(end_leases_of_ended_jobs(session, list(leases.values()), now))
    held = [t for t, le in leases.items() if t not in ended and le.live(now)]
    expires_at = now + timedelta(seconds=ttl_s)
    if held:
        session.execute(
            update(Lease)
            .where(Lease.id.in_([leases[t].lease_id for t in held]))
            .values(expires_at=expires_at)
        )
        if sightings is not None:
            holders = sightings.due(tenant_id, (leases[t].worker_id for t in held))
            record_seen(session, tenant_id, holders, now)
    session.commit()
    held_set = set(held)
    return held, [t for t in dict.fromkeys(tokens) if t not in held_set], expires_at


def release(
    session: Session, tenant_id: uuid.UUID, tokens: Sequence[str], *, now: datetime
) -> list[str]:
    """Give trials back unfinished (a stopping worker): they return to waiting with the same
    parameters; the attempt is not counted against max_attempts. Commits."""
    leases = load_leases(session, tokens, tenant_id=tenant_id, lock=True)
    repeated = {t for t, le in leases.items() if le.ended_by(EndReason.RELEASED)}
    lost = [t for t in tokens if t not in repeated and not (t in leases and leases[t].live(now))]
    if lost:
        session.rollback()
        raise LeasesLost(lost)
    fresh = [leases[t] for t in dict.fromkeys(tokens) if t not in repeated]
    if fresh:
        end_leases(session, [le.lease_id for le in fresh], EndReason.RELEASED, now)
        # attempt + 1 keeps (trial, attempt) unique per lease; only expired leases count
        # against max_attempts (reaper.py), so a release costs the trial nothing.
        session.execute(
            update(Trial)
            .where(Trial.id.in_([le.trial_id for le in fresh]))
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1, started_at=None)
        )
    session.commit()
    return list(dict.fromkeys(tokens))
