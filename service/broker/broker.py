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

from service.broker import leasing, results
from service.broker.fencing import HeldLease
from service.broker.reaper import Reaper
from service.broker.registry import MirrorRegistry, load_intermediate
from service.broker.results import ReportIn, ResultIn
from service.broker.study_sink import write_finished
from service.db.models import Job, utcnow

__all__ = ["Broker", "LeaseAnswer"]


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    grants: list[leasing.Grant]
    retry_after_s: float | None


@dataclass(frozen=True, slots=True)
class _JobFacts:
    steps: int
    uses_pruner: bool


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
    ) -> None:
        self._sessions = session_factory
        self._storage = storage
        self.lease_ttl_s = lease_ttl_s
        self.retry_after_s = retry_after_s
        self.max_capacity = max_capacity
        self.registry = MirrorRegistry()
        self.reaper = Reaper(session_factory, storage, period_s=reaper_period_s)
        self._locks: dict[uuid.UUID, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._facts: dict[uuid.UUID, _JobFacts] = {}

    # -- the protocol ----------------------------------------------------------------------

    def lease(self, *, tenant_id: uuid.UUID, worker_id: str, capacity: int) -> LeaseAnswer:
        """Up to `capacity` trials of one job (the oldest active job with work); a larger
        capacity than the server allows is served as the allowed one."""
        capacity = max(1, min(capacity, self.max_capacity))
        with self._sessions() as session:
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
                    )
                if grants:
                    return LeaseAnswer(grants, None)
        return LeaseAnswer([], self.retry_after_s)

    def heartbeat(self, tokens: Sequence[str]) -> tuple[list[str], list[str], datetime]:
        with self._sessions() as session:
            return results.heartbeat(session, tokens, ttl_s=self.lease_ttl_s, now=utcnow())

    def report(self, reports: Sequence[ReportIn]) -> list[str]:
        """Store the losses; returns the tokens to stop (pruned, or their job cancelled)."""
        with self._sessions() as session:
            live, stop = results.record_reports(session, reports, now=utcnow())
            facts = self._job_facts(session, {le.job_id for le in live})
            pruning = [le for le in live if facts[le.job_id].uses_pruner]
            if pruning:
                stop += self._prune(session, pruning)
        return sorted(set(stop))

    def complete(self, items: Sequence[ResultIn]) -> list[str]:
        """Record the results, then write the newly finished trials into the Optuna study."""
        with self._sessions() as session:

            def steps_of(job_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
                return {j: f.steps for j, f in self._job_facts(session, job_ids).items()}

            accepted, finished = results.complete(session, items, steps_of=steps_of, now=utcnow())
            if finished:
                write_finished(session, self._storage(), finished)
        return accepted

    def release(self, tokens: Sequence[str]) -> list[str]:
        with self._sessions() as session:
            return results.release(session, tokens, now=utcnow())

    # -- internals -------------------------------------------------------------------------

    def _job_lock(self, job_id: uuid.UUID) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(job_id, threading.Lock())

    def _job_facts(self, session: Session, job_ids: set[uuid.UUID]) -> dict[uuid.UUID, _JobFacts]:
        missing = [j for j in job_ids if j not in self._facts]
        if missing:
            for job_id, steps, spec in session.execute(
                select(Job.id, Job.steps, Job.spec).where(Job.id.in_(missing))
            ):
                pruner = (spec or {}).get("pruner") or "none"
                self._facts[job_id] = _JobFacts(steps, pruner != "none")
        return {j: self._facts[j] for j in job_ids if j in self._facts}

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
