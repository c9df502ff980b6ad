"""A worker's writes on baseline runs: heartbeats, completions, failures, releases, and the
reaper's pass over their expired leases.

The guarantees are a trial's (completion.py, lease_endings.py, reaper.py): each call is one
transaction over all its tokens, under the jobs' row locks (the lock order every writer of a
job follows: job rows, lease rows, run rows), committed at once; a token that no longer holds
its run makes the call raise `LeasesLost` and change nothing, a repeat answers as the first
did; a result that does not fit its run (one value per seed, divergence steps within the
job's steps, wall and compile seconds within its lease's age: write_checks.py) is a 422 and
changes nothing. Baseline runs send no intermediate reports. A run whose result is stored
may finish its job (`service.job_status.finish_done_jobs`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from optimizer.tuning.outcome import TrialResult
from service.broker.baseline_fencing import (
    HeldRun,
    end_baseline_leases,
    end_leases_of_ended_jobs,
    load_baseline_leases,
)
from service.broker.fencing import EndReason, LeasesLost
from service.broker.workers import Sightings, record_seen
from service.broker.write_checks import check_results
from service.broker.writes import FailureIn, ResultIn
from service.db.models import MAX_ERROR, BaselineLease, BaselineRun, Job, TrialState
from service.job_status import finish_done_jobs

__all__ = ["complete", "fail", "heartbeat", "reap_expired", "release"]

log = logging.getLogger(__name__)


def _fenced(
    session: Session,
    tenant_id: uuid.UUID,
    tokens: Sequence[str],
    repeat_reason: EndReason,
    now: datetime,
) -> tuple[dict[str, HeldRun], set[str]]:
    """The live or already-``repeat_reason``-ended leases of ``tokens`` under the jobs' and
    leases' locks, and the repeats among them. Raises `LeasesLost` (after committing the
    endings of ended jobs' leases, which stand on their own)."""
    job_ids = {
        le.job_id for le in load_baseline_leases(session, tokens, tenant_id=tenant_id).values()
    }
    if job_ids:
        session.execute(
            select(Job.id).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()
        ).all()
    leases = load_baseline_leases(session, tokens, tenant_id=tenant_id, lock=True)
    ended = set(end_leases_of_ended_jobs(session, list(leases.values()), now))
    repeated = {t for t, le in leases.items() if le.ended_by(repeat_reason)}
    lost = [
        t
        for t in tokens
        if t in ended or (t not in repeated and not (t in leases and leases[t].live(now)))
    ]
    if lost:
        session.commit()
        raise LeasesLost(lost)
    return leases, repeated


def complete(
    session: Session, tenant_id: uuid.UUID, results: Sequence[ResultIn], *, now: datetime
) -> list[str]:
    """Store the runs' results (judged as a trial's: which seeds diverged), finish the jobs
    that were waiting only for them, and commit; returns the accepted tokens."""
    tokens = [r.token for r in results]
    leases, repeated = _fenced(session, tenant_id, tokens, EndReason.COMPLETED, now)
    check_results(results, leases, now)  # a 422 before anything is written (the caller rolls back)
    fresh = {r.token: r for r in results if r.token not in repeated}
    updates = []
    for token, r in fresh.items():
        lease = leases[token]
        outcome = TrialResult.judge(
            final_losses=r.final_losses,
            validation_losses=r.validation_losses,
            last_finite_losses=r.last_finite_losses,
            diverged_at_step=r.diverged_at_step,
            steps=lease.job_steps,
        )
        updates.append(
            {
                "id": lease.run_id,
                "state": outcome.state,
                "final_losses": list(r.final_losses),
                "validation_losses": list(r.validation_losses or []),
                "seeds_diverged_at": list(outcome.seeds_diverged_at),
                "wall_s": r.wall_s,
                "compile_s": r.compile_s,
                "versions": dict(r.versions) if r.versions else None,
                "finished_at": now,
            }
        )
    if updates:
        session.execute(update(BaselineRun), updates)
        end_baseline_leases(session, [leases[t].lease_id for t in fresh], EndReason.COMPLETED, now)
        finish_done_jobs(session, {leases[t].job_id for t in fresh}, now)
    session.commit()
    return list(dict.fromkeys(tokens))


def fail(
    session: Session, tenant_id: uuid.UUID, failures: Sequence[FailureIn], *, now: datetime
) -> list[str]:
    """Fail runs their worker could not build or train (not retried: the same code fails the
    same way); their job goes on without them. Commits; returns the accepted tokens."""
    tokens = [f.token for f in failures]
    leases, repeated = _fenced(session, tenant_id, tokens, EndReason.FAILED, now)
    fresh = {f.token: f for f in failures if f.token not in repeated}
    if fresh:
        session.execute(
            update(BaselineRun),
            [
                {
                    "id": leases[t].run_id,
                    "state": TrialState.FAILED.value,
                    "error": f.error[:MAX_ERROR],
                    "finished_at": now,
                }
                for t, f in fresh.items()
            ],
        )
        end_baseline_leases(session, [leases[t].lease_id for t in fresh], EndReason.FAILED, now)
        finish_done_jobs(session, {leases[t].job_id for t in fresh}, now)
    session.commit()
    return list(dict.fromkeys(tokens))


def heartbeat(
    session: Session,
    tenant_id: uuid.UUID,
    tokens: Sequence[str],
    *,
    ttl_s: float,
    now: datetime,
    sightings: Sightings | None = None,
) -> tuple[list[str], list[str]]:
    """Renew the live leases among ``tokens``; returns (held, lost) and commits. The workers
    holding them were seen now (written when ``sightings`` says it is due), as for trials."""
    leases = load_baseline_leases(session, tokens, tenant_id=tenant_id, lock=True)
    ended = set(end_leases_of_ended_jobs(session, list(leases.values()), now))
    held = [t for t, le in leases.items() if t not in ended and le.live(now)]
    if held:
        session.execute(
            update(BaselineLease)
            .where(BaselineLease.id.in_([leases[t].lease_id for t in held]))
            .values(expires_at=now + timedelta(seconds=ttl_s))
        )
        if sightings is not None:
            holders = sightings.due(tenant_id, (leases[t].worker_id for t in held))
            record_seen(session, tenant_id, holders, now)
    session.commit()
    held_set = set(held)
    return held, [t for t in dict.fromkeys(tokens) if t not in held_set]


def release(
    session: Session, tenant_id: uuid.UUID, tokens: Sequence[str], *, now: datetime
) -> list[str]:
    """Give runs back unfinished (a stopping worker): waiting again, not counted as an
    attempt. Commits."""
    leases = load_baseline_leases(session, tokens, tenant_id=tenant_id, lock=True)
    repeated = {t for t, le in leases.items() if le.ended_by(EndReason.RELEASED)}
    lost = [t for t in tokens if t not in repeated and not (t in leases and leases[t].live(now))]
    if lost:
        session.rollback()
        raise LeasesLost(lost)
    fresh = [leases[t] for t in dict.fromkeys(tokens) if t not in repeated]
    if fresh:
        end_baseline_leases(session, [le.lease_id for le in fresh], EndReason.RELEASED, now)
        session.execute(
            update(BaselineRun)
            .where(BaselineRun.id.in_([le.run_id for le in fresh]))
            .values(
                state=TrialState.WAITING.value, attempt=BaselineRun.attempt + 1, started_at=None
            )
        )
    session.commit()
    return list(dict.fromkeys(tokens))


def reap_expired(session: Session, now: datetime) -> int:
    """End every expired live baseline lease: its run waits again (attempt + 1), or fails
    once ``max_attempts`` of its leases expired. One transaction per job, under its row lock;
    returns how many leases ended."""
    job_ids = session.scalars(
        select(BaselineRun.job_id)
        .join(BaselineLease, BaselineLease.run_id == BaselineRun.id)
        .where(BaselineLease.ended_at.is_(None), BaselineLease.expires_at <= now)
        .distinct()
    ).all()
    session.rollback()
    reaped = 0
    for job_id in job_ids:
        reaped += _reap_job(session, job_id, now)
    return reaped


def _reap_job(session: Session, job_id: uuid.UUID, now: datetime) -> int:
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        session.rollback()
        return 0
    expired = session.execute(
        select(BaselineLease.id, BaselineLease.run_id)
        .join(BaselineRun, BaselineRun.id == BaselineLease.run_id)
        .where(
            BaselineRun.job_id == job_id,
            BaselineLease.ended_at.is_(None),
            BaselineLease.expires_at <= now,
        )
        .with_for_update(of=BaselineLease, skip_locked=True)
    ).all()
    if not expired:
        session.rollback()
        return 0
    end_baseline_leases(session, [e.id for e in expired], EndReason.EXPIRED, now)
    run_ids = [e.run_id for e in expired]
    used = dict(
        session.execute(
            select(BaselineLease.run_id, func.count())
            .where(
                BaselineLease.run_id.in_(run_ids),
                BaselineLease.end_reason == EndReason.EXPIRED.value,
            )
            .group_by(BaselineLease.run_id)
        ).all()
    )
    failed = [r for r in run_ids if used.get(r, 0) >= job.max_attempts]
    retried = [r for r in run_ids if r not in failed]
    if retried:
        session.execute(
            update(BaselineRun)
            .where(BaselineRun.id.in_(retried))
            .values(
                state=TrialState.WAITING.value, attempt=BaselineRun.attempt + 1, started_at=None
            )
        )
    if failed:
        session.execute(
            update(BaselineRun)
            .where(BaselineRun.id.in_(failed))
            .values(
                state=TrialState.FAILED.value,
                error=f"its lease expired {job.max_attempts} times (no worker finished it)",
                finished_at=now,
            )
        )
        finish_done_jobs(session, {job_id}, now)
    session.commit()
    log.info(
        "reaped %d baseline lease(s) of job %s: %d retried, %d failed",
        len(expired),
        job_id,
        len(retried),
        len(failed),
    )
    return len(expired)
