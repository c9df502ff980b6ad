"""Leasing: handing up to K trials of one job to a worker, never more than the job's budget.

Per job, one lease decision at a time: the job's row is locked (`SELECT ... FOR UPDATE`; on
SQLite the single writer plus the broker's in-process lock do the same), the mirror is
brought up to date from `trials`, waiting trials (the warm-up sweep, retries, released ones)
are taken first, and only then new configurations are sampled, until `n_trials` rows exist.
When it has no trial to hand out, its baseline runs are leased instead (baseline_leasing.py).
Everything is written in one transaction (batched inserts) and committed at once: no
transaction is held while a worker trains.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from optimizer.tuning.mirror import StudyMirror, TrialSnapshot
from service.broker.baseline_leasing import lease_baselines
from service.broker.confirmation_stage import sampler_share, start_confirmation
from service.broker.fits import IN_PLACE, LeaseFits
from service.broker.grants import Grant
from service.broker.registry import MirrorRegistry
from service.broker.tokens import hash_token, new_token
from service.db.models import Job, JobStatus, Lease, Trial, TrialSource, TrialState
from service.inbound import json_problem
from service.job_status import transition

__all__ = ["Grant", "candidate_jobs", "enqueue_trials", "lease_job"]


def candidate_jobs(session: Session, tenant_id: uuid.UUID, limit: int = 8) -> list[uuid.UUID]:
    """Active jobs of the tenant, oldest first (first come, first served)."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.tenant_id == tenant_id, Job.status.in_(JobStatus.active()))
            .order_by(Job.created_at, Job.id)
            .limit(limit)
        )
    )


def lease_job(
    session: Session,
    registry: MirrorRegistry,
    job_id: uuid.UUID,
    *,
    worker_id: str,
    capacity: int,
    ttl_s: float,
    now: datetime,
    fits: LeaseFits = IN_PLACE,
) -> list[Grant]:
    """Lease up to `capacity` trials of one job and commit; [] when it has nothing to hand out
    (the recommendation fits of its confirmation stage and baselines' check through `fits`).

    The caller holds the broker's in-process lock for this job. On any error the job's mirror
    is dropped (it may hold asked-but-unwritten trials) and rebuilt from the table next time.
    """
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None or job.status not in JobStatus.active():
        session.rollback()
        return []
    problem = json_problem(job.spec.to_dict())
    if problem is not None:
        # A job stored before the API bounded its input (service/inbound.py): its workers
        # could not be sent it, so it fails with the reason instead of breaking every lease.
        session.rollback()
        _fail_job(session, job_id, f"the job's stored specification cannot be sent: {problem}", now)
        return []
    mirror = registry.get(job)
    try:
        with mirror.lock:
            grants = _lease_locked(
                session, registry, mirror, job, worker_id, capacity, ttl_s, now, fits
            )
    except ImportError as exc:
        # A sampler whose optional package is missing on this server (gp needs torch, cmaes
        # needs cmaes) fails only once its startup trials are done: fail the job, with a
        # reason, rather than answer 500 to every worker from then on.
        session.rollback()
        registry.drop(job_id)
        _fail_job(session, job_id, f"the job's sampler cannot run on this server: {exc}", now)
        return []
    except BaseException:
        session.rollback()
        registry.drop(job_id)
        raise
    return grants


def _fail_job(session: Session, job_id: uuid.UUID, error: str, now: datetime) -> None:
    job = session.scalars(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if job is not None and job.status in JobStatus.active():
        transition(job, JobStatus.FAILED, error=error, now=now)
    session.commit()


def _lease_locked(
    session: Session,
    registry: MirrorRegistry,
    mirror: StudyMirror,
    job: Job,
    worker_id: str,
    capacity: int,
    ttl_s: float,
    now: datetime,
    fits: LeaseFits,
) -> list[Grant]:
    registry.sync(session, job.id, mirror)
    waiting = _waiting(session, job, capacity)
    share = sampler_share(job)
    n_new = max(0, min(capacity - len(waiting), share - len(mirror)))
    if not waiting and n_new == 0 and len(mirror) < job.n_trials:
        # The sampler's share is out: the confirmation stage (confirmation_stage.py).
        stage = start_confirmation(session, job, len(mirror), fits)
        if stage == "enqueued":
            registry.sync(session, job.id, mirror)
            waiting = _waiting(session, job, capacity)
        if stage != "wait":  # slots the candidates left free (all, without candidates): sampled
            n_new = max(0, min(capacity - len(waiting), job.n_trials - len(mirror)))
    if not waiting and n_new == 0:
        # No trial to hand out: the job's baseline runs, if any (baseline_leasing.py).
        return lease_baselines(
            session, job, worker_id=worker_id, capacity=capacity, ttl_s=ttl_s, now=now, fits=fits
        )

    default_seeds = list(range(job.seeds))
    # (trial id, number, attempt, config, seeds) of every trial handed out by this call.
    handed: list[tuple[int, int, int, Mapping[str, float], list[int]]] = [
        (w.id, w.number, w.attempt, w.params, w.seeds or default_seeds) for w in waiting
    ]
    if waiting:
        session.execute(
            update(Trial)
            .where(Trial.id.in_([w.id for w in waiting]))
            .values(state=TrialState.RUNNING.value, started_at=now)
        )
    if n_new:
        first = len(mirror)  # numbers are dense: the mirror holds every row of the job
        asked = mirror.ask(n_new)
        ids = insert_trials(
            session, job.id, first, [a.config for a in asked], TrialSource.SAMPLER, started=now
        )
        for i, (a, trial_id) in enumerate(zip(asked, ids, strict=True)):
            mirror.bind(a, TrialSnapshot(trial_id, "running", a.config))
            handed.append((trial_id, first + i, 1, a.config, default_seeds))

    expires_at = now + timedelta(seconds=ttl_s)
    tokens = [new_token() for _ in handed]
    session.execute(
        insert(Lease),
        [
            {
                "trial_id": trial_id,
                "attempt": attempt,
                "token_hash": hash_token(token),
                "worker_id": worker_id,
                "expires_at": expires_at,
                "created_at": now,
            }
            for token, (trial_id, _, attempt, _, _) in zip(tokens, handed, strict=True)
        ],
    )
    if job.status == JobStatus.QUEUED.value:
        transition(job, JobStatus.RUNNING, now=now)
    session.commit()

    base = {
        "job_id": str(job.id),
        "task": job.spec.task.to_dict(),
        "steps": job.steps,
        "report_every": job.report_every,
    }
    return [
        Grant(
            token,
            expires_at,
            ttl_s,
            {
                **base,
                "trial_id": tid,
                "number": num,
                "attempt": att,
                "config": dict(cfg),
                "seeds": list(seeds),
            },
        )
        for token, (tid, num, att, cfg, seeds) in zip(tokens, handed, strict=True)
    ]


def _waiting(session: Session, job: Job, capacity: int) -> list[Any]:
    """Up to ``capacity`` waiting trials of the job, by number, locked (SKIP LOCKED)."""
    return list(
        session.execute(
            select(Trial.id, Trial.number, Trial.attempt, Trial.params, Trial.seeds)
            .where(Trial.job_id == job.id, Trial.state == TrialState.WAITING.value)
            .order_by(Trial.number)
            .limit(capacity)
            .with_for_update(skip_locked=True)
        ).all()
    )


def enqueue_trials(
    session: Session,
    job: Job,
    configs: Sequence[Mapping[str, float]],
    *,
    source: TrialSource = TrialSource.WARMUP,
) -> list[int]:
    """Add waiting trials with fixed configurations (a warm-start sweep) to a job.

    They are leased before any sampled trial and count against `n_trials` (at most the
    remaining budget is enqueued). The caller owns the transaction (job submission). Returns
    the new trial ids.
    """
    count = session.scalar(select(func.count()).where(Trial.job_id == job.id)) or 0
    room = max(0, job.n_trials - count)
    return insert_trials(session, job.id, count, list(configs)[:room], source)


def insert_trials(
    session: Session,
    job_id: uuid.UUID,
    first_number: int,
    configs: Sequence[Mapping[str, float]],
    source: TrialSource,
    *,
    started: datetime | None = None,
    seeds: Sequence[int] | None = None,
) -> list[int]:
    """Insert trials numbered from ``first_number`` with these configurations, in one
    statement: waiting, or running since ``started`` (the broker's sampled trials, leased as
    they are made), on ``seeds`` (None: the job's). Returns their ids in order. The one
    writer of new trial rows."""
    if not configs:
        return []
    state = TrialState.WAITING if started is None else TrialState.RUNNING
    rows = [
        {
            "job_id": job_id,
            "number": first_number + i,
            "params": {k: float(v) for k, v in config.items()},
            "source": source.value,
            "state": state.value,
            "attempt": 1,
            "seeds": None if seeds is None else list(seeds),
            **({"created_at": started, "started_at": started} if started is not None else {}),
        }
        for i, config in enumerate(configs)
    ]
    return list(
        session.scalars(insert(Trial).returning(Trial.id, sort_by_parameter_order=True), rows)
    )
