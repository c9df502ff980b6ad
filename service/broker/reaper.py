"""The reaper: takes back leases that were not renewed in time.

A worker killed with -9, paused, or cut off stops renewing its leases. Every API process runs
a reaper thread that, every `reaper_period_s`, ends expired live leases and returns their
trials to `waiting` with the same parameters and attempt + 1, or records them `failed` once
`max_attempts` attempts expired. Only expired leases count as attempts (a released lease
does not). Claims use `FOR UPDATE SKIP LOCKED`, so reapers of several replicas, and writes
holding a lease row, never wait on one another; each job is handled in its own short
transaction under the job's row lock, like every other change of a job's trials.

Expired leases of baseline runs are reaped the same way (baseline_writes.py).

The same pass finishes the Optuna outbox (study_sink.py) for trials a crashed process left
unwritten. The grace period before it does only keeps it from doing the hot path's work: a
claimed entry is locked (or, on SQLite, written under the process-wide writer lock), so the
two can never both write one trial.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import optuna
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.broker import baseline_writes
from service.broker.fencing import EndReason
from service.broker.study_sink import write_finished
from service.db.models import Job, Lease, Trial, TrialState, utcnow

__all__ = ["Reaper", "reap_expired"]

log = logging.getLogger(__name__)


def reap_expired(session: Session, now: datetime) -> list[int]:
    """End every expired live lease; returns the ids of trials that failed for good."""
    job_ids = session.scalars(
        select(Trial.job_id)
        .join(Lease, Lease.trial_id == Trial.id)
        .where(Lease.ended_at.is_(None), Lease.expires_at <= now)
        .distinct()
    ).all()
    session.rollback()
    failed: list[int] = []
    for job_id in job_ids:
        failed += _reap_job(session, job_id, now)
    return failed


def _reap_job(session: Session, job_id: uuid.UUID, now: datetime) -> list[int]:
    job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None:
        session.rollback()
        return []
    expired = session.execute(
        select(Lease.id, Lease.trial_id)
        .join(Trial, Trial.id == Lease.trial_id)
        .where(Trial.job_id == job_id, Lease.ended_at.is_(None), Lease.expires_at <= now)
        .with_for_update(of=Lease, skip_locked=True)
    ).all()
    if not expired:
        session.rollback()
        return []
    session.execute(
        update(Lease)
        .where(Lease.id.in_([e.id for e in expired]))
        .values(ended_at=now, end_reason=EndReason.EXPIRED.value)
    )
    trial_ids = [e.trial_id for e in expired]
    attempts_used = dict(
        session.execute(
            select(Lease.trial_id, func.count())
            .where(Lease.trial_id.in_(trial_ids), Lease.end_reason == EndReason.EXPIRED.value)
            .group_by(Lease.trial_id)
        ).all()
    )
    failed = [t for t in trial_ids if attempts_used.get(t, 0) >= job.max_attempts]
    retried = [t for t in trial_ids if t not in failed]
    if retried:
        session.execute(
            update(Trial)
            .where(Trial.id.in_(retried))
            .values(state=TrialState.WAITING.value, attempt=Trial.attempt + 1, started_at=None)
        )
    if failed:
        session.execute(
            update(Trial)
            .where(Trial.id.in_(failed))
            .values(state=TrialState.FAILED.value, finished_at=now)
        )
    session.commit()
    log.info(
        "reaped %d lease(s) of job %s: %d retried, %d failed",
        len(expired),
        job_id,
        len(retried),
        len(failed),
    )
    return failed


class Reaper:
    """A daemon thread running `tick` every `period_s` until `stop`."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        storage: Callable[[], optuna.storages.BaseStorage],
        *,
        period_s: float,
        outbox_grace_s: float = 5.0,
    ) -> None:
        self._sessions = session_factory
        self._storage = storage
        self._period_s = period_s
        self._grace = timedelta(seconds=outbox_grace_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        """One pass: reap expired leases (of trials and of baseline runs), write failed trials
        and any stale outbox entries."""
        now = utcnow()
        with self._sessions() as session:
            failed = reap_expired(session, now)
            if failed:
                write_finished(session, self._storage(), failed)
            baseline_writes.reap_expired(session, now)
            write_finished(
                session, self._storage(), finished_before=now - self._grace, recover=True
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="acprop-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            try:
                self.tick()
            except Exception:  # the database may be down: log and try again next period
                log.exception("reaper pass failed; retrying in %.1f s", self._period_s)
