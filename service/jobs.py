"""Tuning jobs: the use cases behind the jobs API, each owning its transaction.

Owns submission (quotas, idempotency, the job's Optuna study), reading jobs with their
progress and trials, cancelling and deleting. Job status changes, here and in the broker,
go through :func:`service.job_status.transition` (re-exported here): ``queued -> running``
when a trial is first leased, then ``finished``, ``cancelled`` or ``failed``. Every query is scoped by tenant: another tenant's job is
indistinguishable from one that does not exist (404).

Optuna is never called while one of our write transactions is open: on SQLite the two
would wait on each other's lock.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from optimizer.job_spec import JobSpec
from optimizer.recommendation import Recommendation
from optimizer.tasks.trust import ALLOWED_MODULES_ENV, TaskNotAllowed
from service.broker.leasing import enqueue_trials
from service.db.models import Job, JobStatus, Tenant, Trial, TrialReport, TrialState
from service.errors import Conflict, InvalidInput, NotFound, OverLimit, QuotaExceeded
from service.job_recommendation import job_recommendation
from service.job_status import transition
from service.keys import Principal
from service.schemas import JobCreate
from service.settings import Settings
from service.studies import Studies, study_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with what the API shows beside it."""

    job: Job
    counts: dict[str, int]
    best_value: float | None


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


def _quota_checks(
    session: Session, settings: Settings, tenant_id: uuid.UUID, body: JobCreate
) -> None:
    retry = settings.retry_after_quota_s
    limits = (
        ("n_trials", body.budget.n_trials, settings.quota_trials_per_job, "trials per job"),
        ("steps", body.budget.steps, settings.quota_steps_per_trial, "steps per trial"),
        ("seeds", body.budget.seeds, settings.quota_seeds_per_trial, "seeds per trial"),
    )
    over = [
        {
            "loc": ["body", "budget", field],
            "msg": f"budget.{field} = {value} exceeds this tenant's limit of {limit} {what}; "
            "ask for at most that many (the operator sets it)",
            "type": "over_limit",
            "limit": limit,
            "requested": value,
        }
        for field, value, limit, what in limits
        if value > limit
    ]
    if over:
        raise OverLimit(over)
    active = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status.in_([s.value for s in JobStatus.active()]))
    )
    if (active or 0) >= settings.quota_active_jobs:
        raise QuotaExceeded(
            {
                "quota": "active jobs",
                "limit": settings.quota_active_jobs,
                "msg": f"this tenant already has {active} queued or running jobs (quota "
                f"{settings.quota_active_jobs}); cancel one or wait for one to finish",
            },
            retry,
        )


#: How this server's operator allows task modules (named in the refusal).
SERVER_SETTING = f"the server's {ALLOWED_MODULES_ENV}"


def _check_task_allowed(settings: Settings, name: str) -> None:
    """Task code is trusted code: a name that is not a built-in, an installed entry point, or
    under a module prefix this server's operator allowed is refused before anything is
    written (optimizer/tasks/trust.py)."""
    try:
        settings.task_trust().check(name, where="this server", setting=SERVER_SETTING)
    except TaskNotAllowed as exc:
        raise InvalidInput.at(["body", "task", "name"], str(exc)) from None


def _by_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def _replay(job: Job, spec: JobSpec, name: str) -> Job:
    if job.spec != spec or job.name != name:
        raise Conflict("this Idempotency-Key was already used for a different job; use a new key")
    return job


def create_job(
    session: Session,
    studies: Studies,
    settings: Settings,
    principal: Principal,
    body: JobCreate,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Submit a job; returns it and whether it was created (False: an idempotent replay)."""
    _check_task_allowed(settings, body.task.name)
    spec = body.to_spec()
    name = body.name or body.task.name
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, principal.tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, spec, name), False
    _quota_checks(session, settings, principal.tenant_id, body)
    session.rollback()  # end the read transaction before Optuna writes

    job_id = uuid.uuid4()
    name_of_study = study_name(job_id)
    studies.ensure(name_of_study)

    # Serialise submissions of one tenant on Postgres, so the active-jobs quota holds under
    # concurrency (SQLite has a single writer anyway).
    session.execute(select(Tenant.id).where(Tenant.id == principal.tenant_id).with_for_update())
    try:
        if idempotency_key is not None:
            existing = _by_idempotency_key(session, principal.tenant_id, idempotency_key)
            if existing is not None:
                raise _LostRace(existing)
        _quota_checks(session, settings, principal.tenant_id, body)
        job = Job.of_spec(
            spec,
            id=job_id,
            tenant_id=principal.tenant_id,
            name=name,
            status=JobStatus.QUEUED.value,
            study_name=name_of_study,
            idempotency_key=idempotency_key,
        )
        session.add(job)
        if spec.warm_start_configs:
            session.flush()  # the job row first: the sweep's trials refer to it
            enqueue_trials(session, job, spec.warm_start_configs)
        session.commit()
    except _LostRace as race:
        session.rollback()
        _discard_study(studies, name_of_study)
        return _replay(race.job, spec, name), False
    except BaseException:
        session.rollback()
        _discard_study(studies, name_of_study)
        raise
    return job, True


def _discard_study(studies: Studies, name: str) -> None:
    """Best effort: a study whose job was never committed is deleted (if the database is down
    too, it stays, empty and unreferenced; the original error is what the client sees)."""
    try:
        studies.delete(name)
    except Exception:
        logger.warning("could not delete the unused study %s", name, exc_info=True)


class _LostRace(Exception):
    def __init__(self, job: Job) -> None:
        self.job = job


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
    return [JobView(job, counts[job.id], best[job.id]) for job in jobs]


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
    """The job's recommendation (see :mod:`service.job_recommendation`); 409 with the reason
    while there is none. ``tenant_id`` None reads any tenant's job (the local CLI)."""
    return job_recommendation(session, tenant_id, job_id)
