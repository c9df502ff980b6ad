"""A job's recommendation: its finished trials, read from our tables, through the
recommendation math of :mod:`optimizer.recommendation` (numpy/scipy, no jax).

Which trials count: `complete` trials give a loss per seed (the validation loss where the
worker measured it, else the final training loss); `diverged` trials give the divergence
evidence, seed by seed (`seeds_diverged_at`: a seed that did not diverge counts as a safe
seed for the divergence edge; rows from before that column count every seed as diverged).
Pruned trials stopped early, so their losses are not comparable with finished ones, and
failed trials carry nothing: both are left out. The answer lists the jax/jaxlib/optax
versions those trials were trained with, and warns when they differ.

The answer is `provisional` while the job runs and `final` once it has ended. Fitting is cheap
at the sizes a job has, but a busy dashboard polls; answers are cached per (job, finished
trials), so a poll that finds nothing new costs one count query.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optimizer.recommendation import NotEnoughEvidence, Recommendation, TrialOutcome, recommend
from optimizer.tuning.outcome import TrialResult
from optimizer.versions import summarise as summarise_versions
from service.db.models import Job, JobStatus, Trial, TrialSource, TrialState
from service.errors import Conflict, NotFound

__all__ = ["USED_STATES", "job_recommendation", "trial_record"]

_CACHE_SIZE = 256
_cache: OrderedDict[tuple[uuid.UUID, int, str], Recommendation] = OrderedDict()
_cache_lock = threading.Lock()

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


def _compute(trials: list[Trial], job: Job, status: str) -> Recommendation:
    try:
        rec = recommend([trial_record(t) for t in trials], status=status)  # type: ignore[arg-type]
    except NotEnoughEvidence as exc:
        raise Conflict(
            f"no recommendation for job {job.id} yet: {exc.reason} "
            f"({len(trials)} of {job.n_trials} trials finished with a result)"
        ) from None
    # The versions the answer rests on: those of the trials it was fitted on.
    versions, warnings = summarise_versions(t.versions for t in trials)
    return replace(rec, job_id=str(job.id), versions=versions, warnings=warnings)


def job_recommendation(
    session: Session, tenant_id: uuid.UUID | None, job_id: uuid.UUID
) -> Recommendation:
    """The recommendation of a job the caller owns (``tenant_id`` None: any job, for the
    local CLI); 404 when there is no such job, 409 with the reason while there is none."""
    query = select(Job).where(Job.id == job_id)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    job = session.scalar(query)
    if job is None:
        raise NotFound(f"no job {job_id}")
    status = "provisional" if job.status in JobStatus.active() else "final"
    n_used = (
        session.scalar(
            select(func.count())
            .select_from(Trial)
            .where(Trial.job_id == job_id, Trial.state.in_(USED_STATES))
        )
        or 0
    )
    key = (job_id, n_used, status)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
    if cached is not None:
        session.rollback()
        return cached
    trials = list(
        session.scalars(select(Trial).where(Trial.job_id == job_id, Trial.state.in_(USED_STATES)))
    )
    session.rollback()  # nothing to write; end the read before the fit
    answer = _compute(trials, job, status)
    with _cache_lock:
        _cache[key] = answer
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return answer
