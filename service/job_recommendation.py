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
fits on the caller's thread (the CLI, the broker's stages); the API serves answers fitted in
the background instead (service/recommendation_cache.py), through :func:`fit`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from optimizer.recommendation import NotEnoughEvidence, Recommendation, TrialOutcome, recommend
from optimizer.tuning.outcome import TrialResult
from optimizer.versions import summarise as summarise_versions
from service.db.models import Job, JobStatus, Trial, TrialSource, TrialState
from service.errors import Conflict, NotFound

__all__ = ["USED_STATES", "fit", "job_recommendation", "owned_job", "status_of", "trial_record"]

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


def _recommend_here(records: Sequence[TrialOutcome], status: str) -> Recommendation:
    return recommend(records, status=status)  # type: ignore[arg-type]


def fit(
    trials: Sequence[Trial],
    job_id: uuid.UUID,
    n_trials: int,
    status: str,
    run: Callable[[Sequence[TrialOutcome], str], Recommendation] = _recommend_here,
) -> Recommendation:
    """The recommendation on ``trials`` (a job's finished rows, ``USED_STATES``), with the
    versions they were trained with; :class:`Conflict` with the reason while the evidence
    cannot support one. Any other exception is a fault of the fit. ``run`` fits the records
    (service/recommendation_fitter.py: here, or in a child process)."""
    try:
        rec = run([trial_record(t) for t in trials], status)
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
    return "provisional" if job.status in JobStatus.active() else "final"


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
