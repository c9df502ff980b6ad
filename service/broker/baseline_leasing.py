"""Baseline runs in the broker: enqueued with their job, leased when the job has no trial to
hand out, and the job's check decided once its trials are done.

- At submission every baseline of the spec becomes a waiting run on the job's seeds
  ``0 .. seeds-1``: the seeds every warm-up and sampled trial trains, so a baseline and those
  trials start from the same parameters and see the same batches.
- A worker's lease call gets trials while the job has any to hand out; otherwise (the
  confirmation stage waiting for running trials, the last trials running, or all done) it
  gets waiting baseline runs, up to its capacity, each with its own fenced lease. So
  baselines never delay a trial, and fill the gaps where workers would idle.
- Once all ``n_trials`` trials are finished, the first lease call decides the check: the
  job's recommendation from them (the same records and rules as ``GET .../recommendation``)
  and a trial of exactly that configuration on the job's seeds, if one trained; then the
  check is that trial's result (no training). Otherwise the check is a run of ACProp at the
  recommended configuration on those seeds, leased like a baseline. Without a
  recommendation the check fails with the reason. A job with baselines finishes only once
  they and its check are done (``service.job_status.baselines_settled``).

Everything runs under the job's row lock that the lease path holds (leasing.py), in its
transaction, committed at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from optimizer.baselines import CHECK_OPTIMIZER
from optimizer.recommendation import NotEnoughEvidence
from service.broker.fits import IN_PLACE, LeaseFits
from service.broker.grants import Grant
from service.broker.tokens import BASELINE_TOKEN_PREFIX, hash_token, new_token
from service.db.models import (
    BaselineKind,
    BaselineLease,
    BaselineRun,
    Job,
    JobStatus,
    Trial,
    TrialState,
)
from service.job_baselines import same_config
from service.job_recommendation import USED_STATES, trial_record
from service.job_status import finish_done_jobs, transition

__all__ = ["enqueue_baselines", "lease_baselines", "settle_check"]


def enqueue_baselines(session: Session, job: Job) -> None:
    """The job's baselines as waiting runs on its seeds (the caller owns the transaction)."""
    seeds = list(range(job.seeds))
    rows = [
        {
            "job_id": job.id,
            "number": i,
            "kind": BaselineKind.BASELINE.value,
            "optimizer": b.optimizer,
            "settings": dict(b.settings),
            "seeds": seeds,
            "state": TrialState.WAITING.value,
            "attempt": 1,
        }
        for i, b in enumerate(job.spec.baselines)
    ]
    if rows:
        session.execute(insert(BaselineRun), rows)


def settle_check(session: Session, job: Job, now: datetime, fits: LeaseFits = IN_PLACE) -> None:
    """Decide the job's check once all its trials are finished (module docstring; the
    recommendation fitted through ``fits``); a no-op before, after, and for a job without
    baselines."""
    if not job.spec.baselines:
        return
    has_check = session.scalar(
        select(func.count())
        .select_from(BaselineRun)
        .where(BaselineRun.job_id == job.id, BaselineRun.kind == BaselineKind.CHECK.value)
    )
    if has_check:
        return
    finished = [s.value for s in TrialState.finished()]
    rows, done = session.execute(
        select(func.count(), func.count().filter(Trial.state.in_(finished))).where(
            Trial.job_id == job.id
        )
    ).one()
    if rows < job.n_trials or done < rows:
        return
    trials = session.scalars(
        select(Trial).where(Trial.job_id == job.id, Trial.state.in_(USED_STATES))
    ).all()
    seeds = list(range(job.seeds))
    check: dict[str, Any] = {
        "job_id": job.id,
        "number": len(job.spec.baselines),
        "kind": BaselineKind.CHECK.value,
        "optimizer": CHECK_OPTIMIZER,
        "seeds": seeds,
        "attempt": 1,
    }
    try:
        rec = fits.recommend([trial_record(t) for t in trials], "final")
    except NotEnoughEvidence as exc:
        check.update(
            settings={},
            state=TrialState.FAILED.value,
            error=f"no recommendation to compare with: {exc.reason}",
            finished_at=now,
        )
    else:
        config = rec.config
        match = min(
            (t for t in trials if t.seeds is None and same_config(t.params, config)),
            key=lambda t: t.number,
            default=None,
        )
        check["settings"] = config
        if match is None:
            check["state"] = TrialState.WAITING.value
        else:
            check.update(
                state=match.state,
                final_losses=match.final_losses,
                validation_losses=match.validation_losses,
                seeds_diverged_at=match.seeds_diverged_at,
                trial_number=match.number,
                versions=match.versions,
                finished_at=now,
            )
    session.execute(insert(BaselineRun), [check])
    if check["state"] != TrialState.WAITING.value:
        finish_done_jobs(session, {job.id}, now)


def lease_baselines(
    session: Session,
    job: Job,
    *,
    worker_id: str,
    capacity: int,
    ttl_s: float,
    now: datetime,
    fits: LeaseFits = IN_PLACE,
) -> list[Grant]:
    """Lease up to ``capacity`` waiting baseline runs of ``job`` (deciding its check first
    when its trials are done) and commit; [] when there is none. The caller holds the job's
    row lock and has nothing else to hand out."""
    if not job.spec.baselines:
        session.rollback()
        return []
    settle_check(session, job, now, fits)
    waiting = session.execute(
        select(
            BaselineRun.id,
            BaselineRun.number,
            BaselineRun.kind,
            BaselineRun.attempt,
            BaselineRun.optimizer,
            BaselineRun.settings,
            BaselineRun.seeds,
        )
        .where(BaselineRun.job_id == job.id, BaselineRun.state == TrialState.WAITING.value)
        .order_by(BaselineRun.number)
        .limit(capacity)
        .with_for_update(skip_locked=True)
    ).all()
    if not waiting:
        session.commit()  # a check settled by a trial (and the job it finished) stands
        return []
    session.execute(
        update(BaselineRun)
        .where(BaselineRun.id.in_([w.id for w in waiting]))
        .values(state=TrialState.RUNNING.value, started_at=now)
    )
    expires_at = now + timedelta(seconds=ttl_s)
    tokens = [new_token(BASELINE_TOKEN_PREFIX) for _ in waiting]
    session.execute(
        insert(BaselineLease),
        [
            {
                "run_id": w.id,
                "attempt": w.attempt,
                "token_hash": hash_token(token),
                "worker_id": worker_id,
                "expires_at": expires_at,
                "created_at": now,
            }
            for token, w in zip(tokens, waiting, strict=True)
        ],
    )
    if job.status == JobStatus.QUEUED.value:
        transition(job, JobStatus.RUNNING, now=now)
    session.commit()
    task = job.spec.task.to_dict()
    return [
        Grant(
            token,
            expires_at,
            ttl_s,
            {
                "job_id": str(job.id),
                "run_id": w.id,
                "number": w.number,
                "kind": w.kind,
                "attempt": w.attempt,
                "task": task,
                "optimizer": w.optimizer,
                "settings": dict(w.settings),
                "seeds": list(w.seeds),
                "steps": job.steps,
                "report_every": job.report_every,
            },
            kind="baseline",
        )
        for token, w in zip(tokens, waiting, strict=True)
    ]
