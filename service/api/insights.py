"""Reads that tables and plots are drawn from (the dashboard's), for user keys, scoped by
tenant: a job's trials as columns, the loss curves of chosen trials, its parameter
importance, and the workers serving the tenant. Bounded answers whatever the job's size
(service/trial_feed.py). Plain ``def`` routes, as everywhere (synchronous database calls).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from service import jobs
from service.api.responses import AUTHENTICATED, errors
from service.auth import UserPrincipal
from service.db.models import TrialSource, TrialState, utcnow
from service.deps import SessionDep, SettingsDep
from service.insight_views import (
    CurveList,
    CurveOut,
    ImportanceOut,
    TrialColumnsOut,
    WorkerList,
    WorkerOut,
)
from service.job_importance import ImportanceCache
from service.trial_feed import MAX_CURVES, MAX_POINTS, curves, trial_columns
from service.worker_roster import tenant_workers

router = APIRouter(tags=["jobs"])

TrialNumber = Annotated[int, Query(ge=0, le=10_000_000)]


def _importance(request: Request) -> ImportanceCache:
    cache = getattr(request.app.state, "importance", None)
    if cache is None:
        cache = request.app.state.importance = ImportanceCache(request.app.state.session_factory)
    return cache


@router.get(
    "/jobs/{job_id}/trials/columns",
    response_model=TrialColumnsOut,
    responses=errors(*AUTHENTICATED, 404, 422),
)
def list_trial_columns(
    job_id: str,
    principal: UserPrincipal,
    session: SessionDep,
    after: Annotated[int, Query(ge=-1, le=10_000_000, description="trial number")] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> Response:
    """The job's trials numbered above `after`, as columns and without their reports: what a
    table or a plot of thousands of trials needs, in about 150 bytes a trial."""
    cols = trial_columns(
        session, principal.tenant_id, jobs.parse_job_id(job_id), after=after, limit=limit
    )
    out = TrialColumnsOut(
        number=cols.number,
        state=[TrialState(s) for s in cols.state],
        source=[TrialSource(s) for s in cols.source],
        attempt=cols.attempt,
        params=cols.params,
        value=cols.value,
        on_validation=cols.on_validation,
        diverged_at_step=cols.diverged_at_step,
        last_step=cols.last_step,
        wall_s=cols.wall_s,
        errors={str(n): e for n, e in cols.errors.items()},
        next_after=cols.next_after,
    )
    # Serialized here, once: returned as a model, it would be dumped, validated again against
    # the response model and encoded (about half the time of a 5,000-trial page).
    return Response(out.model_dump_json(), media_type="application/json")


@router.get(
    "/jobs/{job_id}/curves", response_model=CurveList, responses=errors(*AUTHENTICATED, 404, 422)
)
def list_curves(
    job_id: str,
    principal: UserPrincipal,
    session: SessionDep,
    trial: Annotated[
        list[TrialNumber],
        Query(max_length=MAX_CURVES, description=f"trial numbers (at most {MAX_CURVES})"),
    ] = [],  # noqa: B006 (FastAPI copies defaults)
) -> CurveList:
    """Loss against step for the trials numbered `trial` (`?trial=3&trial=17`): the mean
    training loss over the seeds at each reported step of the current attempt, at most
    `max_points` points a curve; with the step a diverged trial diverged at."""
    found = curves(session, principal.tenant_id, jobs.parse_job_id(job_id), trial)
    return CurveList(
        curves=[
            CurveOut(
                number=c.number,
                state=TrialState(c.state),
                attempt=c.attempt,
                diverged_at_step=c.diverged_at_step,
                steps=c.steps,
                loss=c.loss,
            )
            for c in found
        ],
        max_points=MAX_POINTS,
    )


@router.get(
    "/jobs/{job_id}/importance",
    response_model=ImportanceOut,
    responses=errors(*AUTHENTICATED, 404),
)
def get_importance(
    job_id: str, principal: UserPrincipal, session: SessionDep, request: Request
) -> ImportanceOut:
    """How much each tuned hyperparameter decides the loss (Optuna's PED-ANOVA over the
    complete and diverged trials; diverged ones rank worst). Computed off the request path:
    while a newer answer is computed the last one comes back with `computing`."""
    answer = _importance(request).get(session, principal.tenant_id, jobs.parse_job_id(job_id))
    return ImportanceOut(
        importances=answer.importances,
        evaluator=answer.evaluator,
        n_trials=max(answer.n_trials, 0),
        n_read=answer.n_read,
        n_finished=answer.n_finished,
        computing=answer.computing,
        reason=answer.reason,
    )


@router.get("/workers", response_model=WorkerList, responses=errors(*AUTHENTICATED, 422))
def list_workers(
    principal: UserPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> WorkerList:
    """The workers serving this tenant's jobs, the most recently seen first: when each was
    last seen, the trials it holds and has finished, and its compile and train seconds."""
    views, total = tenant_workers(session, principal.tenant_id, now=utcnow(), limit=limit)
    return WorkerList(
        workers=[
            WorkerOut(
                worker_id=v.worker.worker_id,
                first_seen_at=v.worker.first_seen_at,
                last_seen_at=v.worker.last_seen_at,
                capacity=v.worker.capacity,
                trials_held=v.trials_held,
                trials_finished=v.worker.trials_finished,
                trials_failed=v.worker.trials_failed,
                compile_s=v.worker.compile_s,
                train_s=v.worker.train_s,
                versions=v.worker.versions,
            )
            for v in views
        ],
        total=total,
        lease_ttl_s=settings.lease_ttl_s,
    )
