"""The job status machine: every change of a job's status, by the jobs API and by the broker,
goes through :func:`transition`, which checks it against :data:`TRANSITIONS` and stamps its
time.

``queued -> running`` when a trial is first leased (broker), then ``finished`` (broker, once
every trial is finished and in the job's Optuna study: :func:`finish_done_jobs`), ``cancelled``
(API) or ``failed`` (broker: the job's sampler cannot run here, or its task cannot run). Anything else is a 409. Its own module, depending
on the models alone, so that both ``service.jobs`` and ``service.broker`` can use it
(``service.jobs`` imports the broker).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db.models import BaselineKind, BaselineRun, Job, JobStatus, Trial, TrialState, utcnow
from service.errors import Conflict

__all__ = ["TRANSITIONS", "baselines_settled", "finish_done_jobs", "transition"]

# Allowed status changes; anything else is a 409.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.FINISHED, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.FINISHED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


def transition(
    job: Job, to: JobStatus, *, error: str | None = None, now: datetime | None = None
) -> None:
    """Move ``job`` to status ``to`` and stamp the time, ``now`` or the current time (the
    caller holds the job's row lock and commits).

    Raises:
        Conflict: the change is not allowed from the job's current status.
    """
    current = JobStatus(job.status)
    if to not in TRANSITIONS[current]:
        raise Conflict(f"job {job.id} is {current.value} and cannot become {to.value}")
    at = utcnow() if now is None else now
    job.status = to.value
    if to is JobStatus.RUNNING:
        job.started_at = at
    else:
        job.finished_at = at
    if to is JobStatus.CANCELLED:
        job.cancelled_at = at
    if error is not None:
        job.error = error


def finish_done_jobs(session: Session, job_ids: set[uuid.UUID], now: datetime) -> None:
    """Mark active jobs finished once n_trials of their trials are finished *and* written
    into the job's Optuna study, so a finished job's study is complete, and their baseline
    runs are done (:func:`baselines_settled`). Called by the Optuna writer
    (service/broker/study_sink.py) after each write and by the writers of baseline runs
    (service/broker/baseline_*.py); it locks the jobs' rows, so of two
    concurrent writers the later one sees the other's trials."""
    if not job_ids:
        return
    jobs = session.scalars(
        select(Job)
        .where(Job.id.in_(job_ids))
        .order_by(Job.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for job in jobs:
        if job.status not in JobStatus.active():
            continue
        done = session.scalar(
            select(func.count())
            .select_from(Trial)
            .where(
                Trial.job_id == job.id,
                Trial.state.in_([s.value for s in TrialState.finished()]),
                Trial.optuna_trial_id.is_not(None),
            )
        )
        if job.n_trials <= (done or 0) and baselines_settled(session, job):
            # A job with finished trials has had a trial leased, so it is running.
            transition(job, JobStatus.FINISHED, now=now)


def baselines_settled(session: Session, job: Job) -> bool:
    """Whether a job's baseline runs are all done and its check decided (the broker decides
    it once the trials are done: service/broker/baseline_leasing.py), so that its final
    answer carries the comparison; true for a job without baselines."""
    if not job.spec.baselines:
        return True
    rows = session.execute(
        select(BaselineRun.kind, BaselineRun.state).where(BaselineRun.job_id == job.id)
    ).all()
    finished = {s.value for s in TrialState.finished()}
    return any(kind == BaselineKind.CHECK.value for kind, _ in rows) and all(
        state in finished for _, state in rows
    )
