"""A job's confirmation stage in the broker: once the sampler's share of the trials is out and
every trial before it has finished, the candidates (optimizer/tuning/confirmation.py) are
enqueued as waiting trials on the job's fresh seeds, leased first like any waiting trial.

Called by the lease path under the job's row lock (leasing.py), so the stage is entered
exactly once: the slots its candidates leave free (all of them where the trials give no answer
yet) are sampled in the same call, so the job then has all its rows.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from optimizer.space import Range
from optimizer.tuning.confirmation import confirmation_seeds, confirmation_trials
from service.broker.fits import IN_PLACE, LeaseFits
from service.db.models import Job, Trial, TrialSource, TrialState
from service.job_recommendation import USED_STATES, trial_record

__all__ = ["sampler_share", "start_confirmation"]


def sampler_share(job: Job) -> int:
    """The trials the warm start and the sampler make; the rest confirm."""
    return job.n_trials - confirmation_trials(job.n_trials)


def start_confirmation(session: Session, job: Job, n_rows: int, fits: LeaseFits = IN_PLACE) -> str:
    """Enter the stage for a job with ``n_rows`` trials: ``"wait"`` while trials before it
    run, ``"enqueued"`` once its candidates (fitted through ``fits``) are waiting trials,
    ``"sample"`` when there are no candidates (the remaining trials are then sampled)."""
    unfinished = session.scalar(
        select(func.count())
        .select_from(Trial)
        .where(
            Trial.job_id == job.id,
            Trial.state.in_([TrialState.WAITING.value, TrialState.RUNNING.value]),
        )
    )
    if unfinished:
        return "wait"
    finished = session.scalars(
        select(Trial).where(Trial.job_id == job.id, Trial.state.in_(USED_STATES))
    ).all()
    lr = job.spec.space.learning_rate
    high = lr.high if isinstance(lr, Range) else lr.value
    configs = fits.candidates(
        [trial_record(t) for t in finished], job.n_trials - n_rows, lr_high=high
    )
    if not configs:
        return "sample"
    from service.broker.leasing import insert_trials  # (leasing calls this module)

    insert_trials(
        session,
        job.id,
        n_rows,
        configs,
        TrialSource.CONFIRMATION,
        seeds=list(confirmation_seeds(job.seeds)),
    )
    return "enqueued"
