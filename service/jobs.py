"""Tuning jobs after submission (service/job_submission.py): reading them with their
progress and trials, cancelling, deleting, and their recommendation; each use case owns its
transaction.

Job status changes, here and in the broker, go through :func:`service.job_status.transition`
(re-exported here): ``queued -> running`` when a trial is first leased, then ``finished``,
``cancelled`` or ``failed``. Every query is scoped by tenant: another tenant's job is
indistinguishable from one that does not exist (404). Optuna is never called while one of
our write transactions is open: on SQLite the two would wait on each other's lock.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from optimizer.recommendation import Recommendation
from service.db.models import Job, JobStatus, Trial, TrialReport, TrialState
from service.errors import NotFound
from service.job_baselines import (
    BaselineStatus,
    baseline_runs,
    baseline_statuses,
    beside,
    with_baselines,
)
from service.job_recommendation import job_recommendation, owned_revision
from service.job_status import transition
from service.recommendation_cache import RecommendationCache
from service.recommendation_schemas import RecommendationOut
from service.studies import Studies

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with what the API shows beside it."""

    job: Job
    counts: dict[str, int]
    best_value: float | None
    baselines: list[BaselineStatus]


@dataclass(frozen=True, slots=True)
class TrialView:
    trial: Trial
    intermediate: list[tuple[int, list[float | None]]]


def parse_job_id(raw: str) -> uuid.UUID:
    """A job id from a URL; anything that is not a UUID is simply not found."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"no job {raw[:64]!r}") from None


def _owned_job(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, *, lock: bool = False
) -> Job:
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _views(session: Session, jobs: list[Job]) -> list[JobView]:
    ids = [job.id for job in jobs]
    counts: dict[uuid.UUID, dict[str, int]] = {i: {} for i in ids}
    best: dict[uuid.UUID, float | None] = dict.fromkeys(ids)
    if ids:
        rows = session.execute(
            select(Trial.job_id, Trial.state, func.count())
            .where(Trial.job_id.in_(ids))
            .group_by(Trial.job_id, Trial.state)
        ).all()
        for job_id, state, n in rows:
            counts[job_id][state] = n
        for job_id, value in session.execute(
            select(Trial.job_id, func.min(Trial.value))
            .where(Trial.job_id.in_(ids), Trial.state == TrialState.COMPLETE.value)
            .group_by(Trial.job_id)
        ).all():
            best[job_id] = value
    baselines = baseline_statuses(session, ids)
    return [JobView(job, counts[job.id], best[job.id], baselines[job.id]) for job in jobs]


def _end_read(session: Session) -> None:
    """Ends a read transaction, keeping what it read: a rollback expires the session's objects,
    and a later attribute access would load each row again, one query per object, in a new
    transaction (a job read as finished beside trial counts from before its last trials
    finished; a trial's state newer than the reports read with it)."""
    session.expunge_all()
    session.rollback()


def get_job(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobView:
    view = _views(session, [_owned_job(session, tenant_id, job_id)])[0]
    _end_read(session)
    return view


def list_jobs(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    status: JobStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[JobView], int]:
    where = [Job.tenant_id == tenant_id]
    if status is not None:
        where.append(Job.status == status.value)
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    jobs = list(
        session.scalars(
            select(Job)
            .where(*where)
            .order_by(Job.created_at.desc(), Job.id)
            .limit(limit)
            .offset(offset)
        )
    )
    views = _views(session, jobs)
    _end_read(session)
    return views, total


def list_trials(
    session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID, *, after: int, limit: int
) -> tuple[list[TrialView], int | None]:
    """Trials numbered above ``after``, in order, with their current attempt's reports."""
    _owned_job(session, tenant_id, job_id)
    trials = list(
        session.scalars(
            select(Trial)
            .where(Trial.job_id == job_id, Trial.number > after)
            .order_by(Trial.number)
            .limit(limit + 1)
        )
    )
    more = len(trials) > limit
    trials = trials[:limit]
    reports: dict[int, list[tuple[int, list[float | None]]]] = {t.id: [] for t in trials}
    if trials:
        rows = session.execute(
            select(TrialReport.trial_id, TrialReport.step, TrialReport.losses)
            .join(
                Trial, (Trial.id == TrialReport.trial_id) & (Trial.attempt == TrialReport.attempt)
            )
            .where(TrialReport.trial_id.in_(list(reports)))
            .order_by(TrialReport.trial_id, TrialReport.step)
        ).all()
        for trial_id, step, losses in rows:
            reports[trial_id].append((step, losses))
    _end_read(session)
    next_after = trials[-1].number if (more and trials) else None
    return [TrialView(t, reports[t.id]) for t in trials], next_after


def cancel_job(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> JobView:
    """Cancel a queued or running job; cancelling a cancelled job is a no-op."""
    job = _owned_job(session, tenant_id, job_id, lock=True)
    if job.status != JobStatus.CANCELLED.value:
        transition(job, JobStatus.CANCELLED)
        session.commit()
    return get_job(session, tenant_id, job_id)


def delete_job(session: Session, studies: Studies, tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Delete a job, its trials, leases and reports, and its Optuna study."""
    job = _owned_job(session, tenant_id, job_id)
    name = job.study_name
    session.rollback()
    studies.delete(name)
    _owned_job(session, tenant_id, job_id, lock=True)
    # The database cascades to trials, leases and reports.
    session.execute(delete(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    session.commit()


def get_recommendation(
    session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID
) -> Recommendation:
    """The job's recommendation fitted now (see :mod:`service.job_recommendation`; the CLI)
    with its baselines
    beside it (:mod:`service.job_baselines`); 409 with the reason while there is none.
    ``tenant_id`` None reads any tenant's job (the local CLI)."""
    return with_baselines(session, job_id, job_recommendation(session, tenant_id, job_id))


def serve_recommendation(
    session: Session,
    recommendations: RecommendationCache,
    tenant_id: uuid.UUID,
    job_id: uuid.UUID,
) -> RecommendationOut:
    """The API's answer: fitted in the background, with its freshness (see
    :mod:`service.recommendation_cache`), and the job's baselines beside it. One read while
    the answer is current: the job's revision (and ownership: 404), then its baseline runs
    only when it has some."""
    asked = time.monotonic()
    revision, n_runs = owned_revision(session, tenant_id, job_id)
    runs = baseline_runs(session, job_id) if n_runs else []
    session.rollback()
    return beside(recommendations.answer(job_id, revision, asked), runs)
