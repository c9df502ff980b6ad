"""Submitting a job: the task's trust check, its data set (the tenant's, of a kind its family
trains on), the tenant's limits and quotas, idempotency, the job's Optuna study, and the row
with its warm-start sweep and its baseline runs, in one transaction.

Optuna is never called while one of our write transactions is open: on SQLite the two would
wait on each other's lock. A study whose job was not committed is deleted again.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optimizer.job_spec import JobSpec
from optimizer.tasks.trust import ALLOWED_MODULES_ENV, TaskNotAllowed
from service.broker.baseline_leasing import enqueue_baselines
from service.broker.leasing import enqueue_trials
from service.datasets import check_job_dataset
from service.db.models import Job, JobStatus, Tenant
from service.errors import Conflict, InvalidInput, OverLimit, QuotaExceeded
from service.keys import Principal
from service.schemas import JobCreate
from service.settings import Settings
from service.studies import Studies, job_context, study_name

__all__ = ["SERVER_SETTING", "create_job"]

logger = logging.getLogger(__name__)


def _quota_checks(
    session: Session, settings: Settings, tenant_id: uuid.UUID, spec: JobSpec
) -> None:
    retry = settings.retry_after_quota_s
    budget = spec.budget
    limits = (
        ("n_trials", budget.n_trials, settings.quota_trials_per_job, "trials per job"),
        ("steps", budget.steps, settings.quota_steps_per_trial, "steps per trial"),
        ("seeds", budget.seeds, settings.quota_seeds_per_trial, "seeds per trial"),
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
    missing = body.missing_steps()
    if missing is not None:
        raise InvalidInput.at(["body", "budget", "steps"], missing)
    spec = body.to_spec()
    name = body.name or body.task.name
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, principal.tenant_id, idempotency_key)
        if existing is not None:
            return _replay(existing, spec, name), False
    check_job_dataset(session, principal.tenant_id, spec.task)
    _quota_checks(session, settings, principal.tenant_id, spec)
    session.rollback()  # end the read transaction before Optuna writes

    job_id = uuid.uuid4()
    name_of_study = study_name(job_id)
    studies.ensure(
        name_of_study, job_context(job_id, name, spec.task.to_dict(), principal.tenant_id)
    )

    # Serialise submissions of one tenant on Postgres, so the active-jobs quota holds under
    # concurrency (SQLite has a single writer anyway).
    session.execute(select(Tenant.id).where(Tenant.id == principal.tenant_id).with_for_update())
    try:
        if idempotency_key is not None:
            existing = _by_idempotency_key(session, principal.tenant_id, idempotency_key)
            if existing is not None:
                raise _LostRace(existing)
        # Again under the tenant's lock, which a deletion of the data set takes too.
        check_job_dataset(session, principal.tenant_id, spec.task)
        _quota_checks(session, settings, principal.tenant_id, spec)
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
        session.flush()  # the job row first: the sweep's trials and the baselines refer to it
        if spec.warm_start_configs:
            enqueue_trials(session, job, spec.warm_start_configs)
        enqueue_baselines(session, job)
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
