"""The jobs API under ``/api/v1/jobs``: submit, list, read, trials, cancel, delete, recommend.

Plain ``def`` routes: they run in the thread pool, so the synchronous database and Optuna
calls never block the event loop. Routes translate between the API schemas and the use
cases in ``service.jobs``; they hold no logic of their own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from optimizer.job_spec import TaskChoice
from service import job_submission, jobs
from service.api.responses import AUTHENTICATED, errors
from service.auth import UserPrincipal
from service.db.models import JobStatus
from service.deps import RecommendationsDep, SessionDep, SettingsDep, StudiesDep
from service.inbound import json_problem
from service.recommendation_schemas import RecommendationOut
from service.schemas import JobCreate
from service.views import (
    BaselineOut,
    BudgetOut,
    FixedOut,
    IntermediateOut,
    JobList,
    JobOut,
    Progress,
    RangeOut,
    TaskOut,
    TrialList,
    TrialOut,
)

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _task_out(task: TaskChoice) -> TaskOut:
    """The job's task; options stored before the API bounded its input (service/inbound.py)
    that could not be rendered are left out, so one such job cannot break a job list."""
    options = dict(task.options)
    if json_problem(options) is not None:
        options = {}
    return TaskOut(name=task.name, options=options)


def job_out(view: jobs.JobView) -> JobOut:
    job, counts, spec = view.job, view.counts, view.job.spec
    finished = sum(counts.get(s, 0) for s in ("complete", "pruned", "diverged", "failed"))
    return JobOut(
        id=job.id,
        name=job.name,
        status=job.status,  # type: ignore[arg-type]
        task=_task_out(spec.task),
        space={
            k: FixedOut(**v) if "value" in v else RangeOut(**v)
            for k, v in spec.space.to_dict().items()
        },
        budget=BudgetOut(**spec.budget.to_dict()),
        sampler=spec.sampler,
        pruner=spec.pruner,
        warm_start=spec.warm_start,
        seed=spec.seed,
        baselines=[
            BaselineOut(
                kind=b.kind,  # type: ignore[arg-type]
                optimizer=b.optimizer,
                label=b.label,
                settings=b.settings,
                state=b.state,  # type: ignore[arg-type]
            )
            for b in view.baselines
        ],
        study_name=job.study_name,
        progress=Progress(
            n_trials=job.n_trials,
            finished=finished,
            waiting=counts.get("waiting", 0),
            running=counts.get("running", 0),
            complete=counts.get("complete", 0),
            pruned=counts.get("pruned", 0),
            diverged=counts.get("diverged", 0),
            failed=counts.get("failed", 0),
        ),
        best_value=view.best_value,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancelled_at=job.cancelled_at,
        error=job.error,
    )


def trial_out(view: jobs.TrialView) -> TrialOut:
    t = view.trial
    return TrialOut(
        number=t.number,
        state=t.state,  # type: ignore[arg-type]
        source=t.source,  # type: ignore[arg-type]
        seeds=t.seeds,
        attempt=t.attempt,
        params=t.params,
        value=t.value,
        intermediate=[IntermediateOut(step=s, losses=losses) for s, losses in view.intermediate],
        diverged_at_step=t.diverged_at_step,
        seeds_diverged_at=t.seeds_diverged_at,
        last_finite_loss=t.last_finite_loss,
        final_losses=t.final_losses,
        validation_losses=t.validation_losses,
        wall_s=t.wall_s,
        compile_s=t.compile_s,
        versions=t.versions,
        error=t.error,
        created_at=t.created_at,
        started_at=t.started_at,
        finished_at=t.finished_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobOut,
    responses=errors(*AUTHENTICATED, 404, 409, 413, 422),
)
def create_job(
    body: JobCreate,
    principal: UserPrincipal,
    session: SessionDep,
    studies: StudiesDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="a retried submission with the same key returns the first job",
        ),
    ] = None,
) -> JobOut:
    """Submit a tuning job. Only `task.name` is required; the rest has ACProp defaults.
    A family on a user's data set names it in `task.options.dataset`: 404 if the tenant has
    no such data set, 422 if the family cannot train on it."""
    job, created = job_submission.create_job(
        session, studies, settings, principal, body, idempotency_key
    )
    if created:
        response.headers["Location"] = f"/api/v1/jobs/{job.id}"
        request.app.state.metrics.jobs_created.inc()
    return job_out(jobs.get_job(session, principal.tenant_id, job.id))


@router.get("", response_model=JobList, responses=errors(*AUTHENTICATED, 422))
def list_jobs(
    principal: UserPrincipal,
    session: SessionDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobList:
    """The caller's jobs, newest first, optionally only those with one status."""
    views, total = jobs.list_jobs(
        session,
        principal.tenant_id,
        status=JobStatus(status_) if status_ else None,
        limit=limit,
        offset=offset,
    )
    return JobList(jobs=[job_out(v) for v in views], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut, responses=errors(*AUTHENTICATED, 404))
def get_job(job_id: str, principal: UserPrincipal, session: SessionDep) -> JobOut:
    """One job: status, progress per trial state, best value so far, timings."""
    return job_out(jobs.get_job(session, principal.tenant_id, jobs.parse_job_id(job_id)))


@router.get(
    "/{job_id}/trials", response_model=TrialList, responses=errors(*AUTHENTICATED, 404, 422)
)
def list_trials(
    job_id: str,
    principal: UserPrincipal,
    session: SessionDep,
    after: Annotated[int, Query(ge=-1, le=10_000_000, description="trial number")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TrialList:
    """The job's trials numbered above `after`, in order (poll with the last `next_after`)."""
    views, next_after = jobs.list_trials(
        session, principal.tenant_id, jobs.parse_job_id(job_id), after=after, limit=limit
    )
    return TrialList(trials=[trial_out(v) for v in views], next_after=next_after)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=errors(*AUTHENTICATED, 404, 409))
def cancel_job(job_id: str, principal: UserPrincipal, session: SessionDep) -> JobOut:
    """Cancel a queued or running job (workers stop its trials at their next call)."""
    return job_out(jobs.cancel_job(session, principal.tenant_id, jobs.parse_job_id(job_id)))


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(*AUTHENTICATED, 404),
)
def delete_job(
    job_id: str, principal: UserPrincipal, session: SessionDep, studies: StudiesDep
) -> Response:
    """Delete a job with its trials and its Optuna study."""
    jobs.delete_job(session, studies, principal.tenant_id, jobs.parse_job_id(job_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/recommendation",
    response_model=RecommendationOut,
    responses=errors(*AUTHENTICATED, 404, 409),
)
def get_recommendation(
    job_id: str,
    principal: UserPrincipal,
    session: SessionDep,
    recommendations: RecommendationsDep,
) -> RecommendationOut:
    """The recommended ACProp configuration, fitted in the background once per change of the
    job's finished trials; ``freshness`` says which trials it rests on. While a newer fit
    runs, the answer on older trials is served (at most ``freshness.max_lag_s`` old); a
    ``final`` answer is always the fit on all the trials. 409 with the reason while there is
    none: ``conflict`` (the trials cannot support one yet), ``computing`` (being fitted; see
    ``Retry-After``) or ``recommendation_failed`` (the fit failed; asking again fits again)."""
    return jobs.serve_recommendation(
        session, recommendations, principal.tenant_id, jobs.parse_job_id(job_id)
    )
