"""The job status machine: every change of a job's status, by the jobs API and by the broker,
goes through :func:`transition`, which checks it against :data:`TRANSITIONS` and stamps its
time.

``queued -> running`` when a trial is first leased (broker), then ``finished`` (broker, once
every trial is finished and in the job's Optuna study), ``cancelled`` (API) or ``failed``
(broker: the job's sampler cannot run here). Anything else is a 409. Its own module, depending
on the models alone, so that both ``service.jobs`` and ``service.broker`` can use it
(``service.jobs`` imports the broker).
"""

from __future__ import annotations

from datetime import datetime

from service.db.models import Job, JobStatus, utcnow
from service.errors import Conflict

__all__ = ["TRANSITIONS", "transition"]

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
