"""The broker facade: the worker protocol's use-cases for one API process.

Owns what lives as long as the process: the mirrors of the jobs' studies, one in-process lock
per job (threads of one process queue here instead of each holding a pooled connection while
waiting on the job's row lock; on SQLite, which has no row locks, it is the lock), a small
cache of the jobs' immutable facts, and the Optuna storage that finished trials are written
to. Each method opens its own session, runs one use-case transaction and commits it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import optuna
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.broker import baseline_writes, completion, lease_endings, leasing, reports
from service.broker.fencing import HeldLease
from service.broker.fits import IN_PLACE, LeaseFits
from service.broker.reaper import Reaper
from service.broker.registry import MirrorRegistry, load_intermediate
from service.broker.study_sink import write_finished
from service.broker.tokens import is_baseline_token
from service.broker.workers import Sightings, record_seen
from service.broker.writes import FailureIn, ReportIn, ResultIn
from service.db.models import Job, utcnow
from service.errors import InvalidInput

__all__ = ["Broker", "LeaseAnswer"]


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    grants: list[leasing.Grant]
    retry_after_s: float | None


class Broker:
    """The service side of the worker protocol (docs/architecture.md)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        storage: Callable[[], optuna.storages.BaseStorage],
        *,
        lease_ttl_s: float,
        retry_after_s: float,
        reaper_period_s: float,
        max_capacity: int = 256,
        fits: LeaseFits = IN_PLACE,
    ) -> None:
        self._sessions = session_factory
        self._storage = storage
        self.lease_ttl_s = lease_ttl_s
        self.retry_after_s = retry_after_s
        self.max_capacity = max_capacity
        self.fits = fits  # where the lease path's recommendation fits run (fits.py)
        self.registry = MirrorRegistry()
        self.reaper = Reaper(session_factory, storage, period_s=reaper_period_s)
        self._locks: dict[uuid.UUID, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._uses_pruner: dict[uuid.UUID, bool] = {}  # job -> its pruner is not "none"
        self.sightings = Sightings()  # when this process last wrote that a worker was seen

    # -- the protocol ----------------------------------------------------------------------

    def lease(self, *, tenant_id: uuid.UUID, worker_id: str, capacity: int) -> LeaseAnswer:
        """Up to `capacity` trials of one job (the oldest active job with work); a larger
        capacity than the server allows is served as the allowed one."""
        capacity = max(1, min(capacity, self.max_capacity))
        with self._sessions() as session:
            if self.sightings.due(tenant_id, [worker_id]):
                record_seen(session, tenant_id, [worker_id], utcnow(), capacity=capacity)
                session.commit()
            candidates = leasing.candidate_jobs(session, tenant_id)
            session.rollback()
            for job_id in candidates:
                with self._job_lock(job_id):
                    grants = leasing.lease_job(
                        session,
                        self.registry,
                        job_id,
                        worker_id=worker_id,
                        capacity=capacity,
                        ttl_s=self.lease_ttl_s,
                        now=utcnow(),
                        fits=self.fits,
                    )
                if grants:
                    return LeaseAnswer(grants, None)
        return LeaseAnswer([], self.retry_after_s)

    def heartbeat(
        self, tenant_id: uuid.UUID, tokens: Sequence[str]
    ) -> tuple[list[str], list[str], datetime]:
        """Renew the leases of trials and baseline runs (told apart by their tokens' prefix)."""
        runs = [t for t in tokens if is_baseline_token(t)]
        now = utcnow()
        with self._sessions() as session:
            held, lost, expires_at = lease_endings.heartbeat(
                session,
                tenant_id,
                [t for t in tokens if not is_baseline_token(t)],
                ttl_s=self.lease_ttl_s,
                now=now,
                sightings=self.sightings,
            )
            if runs:
                run_held, run_lost = baseline_writes.heartbeat(
                    session,
                    tenant_id,
                    runs,
                    ttl_s=self.lease_ttl_s,
                    now=now,
                    sightings=self.sightings,
                )
                held, lost = held + run_held, lost + run_lost
        return held, lost, expires_at

    def report(self, tenant_id: uuid.UUID, items: Sequence[ReportIn]) -> list[str]:
        """Store the losses; returns the tokens to stop (pruned, or their job ended)."""
        for i, item in enumerate(items):
            if is_baseline_token(item.token):
                raise InvalidInput.at(
                    ["body", "reports", i, "token"],
                    "baseline runs send no reports: complete them once trained",
                )
        with self._sessions() as session:
            live, stop = reports.record_reports(session, tenant_id, items, now=utcnow())
            pruning = [le for le in live if self._pruned(session, le.job_id)]
            if pruning:
                stop += self._prune(session, pruning)
        return sorted(set(stop))

    def complete(self, tenant_id: uuid.UUID, items: Sequence[ResultIn]) -> list[str]:
        """Record the results, then write the newly finished trials into the Optuna study."""
        if _baseline_call("results", [r.token for r in items]):
            with self._sessions() as session:
                return baseline_writes.complete(session, tenant_id, items, now=utcnow())
        with self._sessions() as session:
            accepted, finished = completion.complete(session, tenant_id, items, now=utcnow())
            if finished:
                write_finished(session, self._storage(), finished)
        return accepted

    def fail(self, tenant_id: uuid.UUID, items: Sequence[FailureIn]) -> list[str]:
        """Fail trials whose task could not run (and their job, if it has no result yet);
        the failed trials go into the Optuna study as FAIL."""
        if _baseline_call("failures", [f.token for f in items]):
            with self._sessions() as session:
                return baseline_writes.fail(session, tenant_id, items, now=utcnow())
        with self._sessions() as session:
            accepted, failed = completion.fail(session, tenant_id, items, now=utcnow())
            if failed:
                write_finished(session, self._storage(), failed)
        return accepted

    def release(self, tenant_id: uuid.UUID, tokens: Sequence[str]) -> list[str]:
        with self._sessions() as session:
            if _baseline_call("tokens", tokens):
                return baseline_writes.release(session, tenant_id, tokens, now=utcnow())
            return lease_endings.release(session, tenant_id, tokens, now=utcnow())

    # -- internals -------------------------------------------------------------------------

    def _job_lock(self, job_id: uuid.UUID) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(job_id, threading.Lock())

    def _pruned(self, session: Session, job_id: uuid.UUID) -> bool:
        """Whether the job's pruner is not "none" (a job's spec never changes: kept)."""
        if job_id not in self._uses_pruner:
            spec = session.scalar(select(Job.spec).where(Job.id == job_id))
            self._uses_pruner[job_id] = spec is not None and spec.pruner != "none"
        return self._uses_pruner[job_id]

    def _prune(self, session: Session, leases: Sequence[HeldLease]) -> list[str]:
        intermediate = load_intermediate(session, [(le.trial_id, le.attempt) for le in leases])
        stop = []
        for job_id in {le.job_id for le in leases}:
            job = session.get_one(Job, job_id)
            mirror = self.registry.get(job)
            with mirror.lock:
                self.registry.sync(session, job_id, mirror)
                for le in leases:
                    if le.job_id == job_id and mirror.should_prune(
                        le.trial_id, intermediate.get(le.trial_id, {})
                    ):
                        stop.append(le.token)
        session.rollback()
        return stop


def _baseline_call(field: str, tokens: Sequence[str]) -> bool:
    """Whether a write names baseline runs (else trials): one call names one kind, so that
    it stays one transaction that changes everything or nothing."""
    runs = [is_baseline_token(t) for t in tokens]
    if any(runs) and not all(runs):
        raise InvalidInput.at(
            ["body", field],
            "a call names the leases of trials or of baseline runs, not both: send them apart",
        )
    return bool(runs) and all(runs)
