"""A job's recommendation: its finished trials, read from our tables, through the
recommendation math of :mod:`optimizer.recommendation` (numpy/scipy, no jax).

Which trials count: `complete` trials give a loss per seed (the validation loss where the
worker measured it, else the final training loss); `diverged` trials give the divergence
evidence, seed by seed (`seeds_diverged_at`: a seed that did not diverge counts as a safe
seed for the divergence edge; rows from before that column count every seed as diverged).
Pruned trials stopped early, so their losses are not comparable with finished ones, and
failed trials carry nothing: both are left out. The answer lists the jax/jaxlib/optax
versions those trials were trained with, and warns when they differ.

The answer is `provisional` while the job runs and `final` once it has ended. This module
fits on the caller's thread (the CLI's `recommend`); the API serves answers fitted in the
background instead (service/recommendation_cache.py), each a :func:`read_and_fit` run in a
thread or a fitting process (service/recommendation_fitter.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from optimizer.recommendation import NotEnoughEvidence, Recommendation, TrialOutcome, recommend
from optimizer.tuning.outcome import TrialResult
from optimizer.versions import summarise as summarise_versions
from service.db.models import BaselineRun, Job, JobStatus, Trial, TrialSource, TrialState
from service.errors import Conflict, NotFound

__all__ = [
    "USED_STATES",
    "JobFit",
    "Revision",
    "fit",
    "job_recommendation",
    "owned_job",
    "owned_revision",
    "read_and_fit",
    "read_revision",
    "status_of",
    "trial_record",
]

USED_STATES = (TrialState.COMPLETE.value, TrialState.DIVERGED.value)


def trial_record(trial: Trial) -> TrialOutcome:
    """The recommendation's record of a finished row (the one rule for which seeds diverged:
    optimizer/tuning/outcome.py)."""
    result = TrialResult.stored(
        state=trial.state,
        final_losses=trial.final_losses,
        validation_losses=trial.validation_losses,
        seeds_diverged_at=trial.seeds_diverged_at,
        diverged_at_step=trial.diverged_at_step,
        value=trial.value,
    )
    return result.record(
        trial.number,
        {k: float(v) for k, v in trial.params.items()},
        confirmation=trial.source == TrialSource.CONFIRMATION.value,
    )


def fit(trials: Sequence[Trial], job_id: uuid.UUID, n_trials: int, status: str) -> Recommendation:
    """The recommendation on ``trials`` (a job's finished rows, ``USED_STATES``), fitted in
    the calling thread, with the versions they were trained with; :class:`Conflict` with the
    reason while the evidence cannot support one. Any other exception is a fault of the fit."""
    try:
        rec = recommend([trial_record(t) for t in trials], status=status)  # type: ignore[arg-type]
    except NotEnoughEvidence as exc:
        raise Conflict(
            f"no recommendation for job {job_id} yet: {exc.reason} "
            f"({len(trials)} of {n_trials} trials finished with a result)"
        ) from None
    # The versions the answer rests on: those of the trials it was fitted on.
    versions, warnings = summarise_versions(t.versions for t in trials)
    return replace(rec, job_id=str(job_id), versions=versions, warnings=warnings)


def owned_job(session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID) -> Job:
    """The job, if the caller owns it (``tenant_id`` None: any job); 404 otherwise."""
    query = select(Job).where(Job.id == job_id)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    job = session.scalar(query)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def status_of(job: Job) -> str:
    """``provisional`` while the job runs, ``final`` once it has ended."""
    return _answer_status(job.status)


def _answer_status(job_status: str) -> str:
    return "provisional" if job_status in JobStatus.active() else "final"


def job_recommendation(
    session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID
) -> Recommendation:
    """The recommendation of a job the caller owns, fitted now on all its finished trials
    (``tenant_id`` None: any job, for the local CLI); 404 when there is no such job, 409 with
    the reason while there is none."""
    job = owned_job(session, tenant_id, job_id)
    status, n_trials = status_of(job), job.n_trials
    trials = list(
        session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.state.in_(USED_STATES)))
    )
    session.rollback()  # nothing to write; end the read before the fit
    return fit(trials, job_id, n_trials, status)


@dataclass(frozen=True)
class Revision:
    """What a job's answer depends on: whether the job still runs, how many trials finished
    with a result, and when the last of them finished."""

    status: str
    n_used: int
    last_finished: datetime | None


def _revision_query(job_id: uuid.UUID) -> Select[str, int, datetime | None]:
    used = and_(Trial.job_id == job_id, Trial.state.in_(USED_STATES))
    return (
        select(Job.status, func.count(Trial.id), func.max(Trial.finished_at))
        .select_from(Job)
        .outerjoin(Trial, used)
        .where(Job.id == job_id)
        .group_by(Job.id, Job.status)
    )


def _revision(status: str, n_used: int | None, last: datetime | None) -> Revision:
    return Revision(_answer_status(status), int(n_used or 0), last)


def read_revision(session: Session, job_id: uuid.UUID) -> Revision | None:
    """The job's revision now (one query); None when there is no such job."""
    row = session.execute(_revision_query(job_id)).one_or_none()
    if row is None:
        return None
    status, n_used, last = row
    return _revision(status, n_used, last)


def owned_revision(
    session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID
) -> tuple[Revision, int]:
    """The revision of a job the caller owns (``tenant_id`` None: any job) and how many
    baseline runs it has, in one query (a request's whole read while the answer is
    cached); 404 otherwise."""
    n_runs = (
        select(func.count(BaselineRun.id)).where(BaselineRun.job_id == job_id).scalar_subquery()
    )
    query = _revision_query(job_id).add_columns(n_runs)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    row = session.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"no job {job_id}")
    status, n_used, last, runs = row
    return _revision(status, n_used, last), int(runs or 0)


@dataclass(frozen=True)
class JobFit:
    """One read of a job's finished trials and the fit on them: the answer, or the reason
    the evidence supports none (a 409's detail)."""

    revision: Revision
    read_at: float  # time.monotonic() when the trials were read
    answer: Recommendation | None
    reason: str | None
    seconds: float  # the fit's time


def read_and_fit(session: Session, job_id: uuid.UUID) -> JobFit | None:
    """Read the job's finished trials and fit them (:func:`fit`); None when the job is gone.
    The unit of work of the API's background fits (service/recommendation_fitter.py runs it
    in a thread or a child process)."""
    job = session.get(Job, job_id)
    if job is None:
        session.rollback()
        return None
    read_at = time.monotonic()
    trials = list(
        session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.state.in_(USED_STATES)))
    )
    revision = Revision(
        status_of(job),
        len(trials),
        max((t.finished_at for t in trials if t.finished_at is not None), default=None),
    )
    n_trials = job.n_trials
    session.expunge_all()  # keep what was read; a rollback would expire it
    session.rollback()
    started = time.monotonic()
    try:
        answer = fit(trials, job_id, n_trials, revision.status)
    except Conflict as exc:  # the evidence supports none yet
        return JobFit(revision, read_at, None, str(exc.detail), time.monotonic() - started)
    return JobFit(revision, read_at, answer, None, time.monotonic() - started)
