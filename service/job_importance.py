"""A job's parameter importance (optimizer/tuning/importance.py), computed off the request
path and kept per job.

It depends only on the job's finished trials with a result for the sampler (complete and
diverged), so an answer stays current while their number does not change. A request that
finds the kept answer current returns it after one count query. Otherwise it hands the
computation to this process's importance thread (one thread: however many pages poll, this
never takes more than one core) unless that job's is already under way, waits up to `WAIT_S`
for it, and if it is not done by then answers with the previous result marked stale (or none
yet), so a poll never waits on a large job; the page asks again at its next poll.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from optimizer.job_spec import JobSpec
from optimizer.tuning.importance import (
    EVALUATOR,
    FinishedTrial,
    NotEnoughTrials,
    param_importances,
)
from service.db.models import Job, Trial, TrialState
from service.errors import NotFound

__all__ = ["WAIT_S", "ImportanceAnswer", "ImportanceCache"]

logger = logging.getLogger(__name__)

WAIT_S = 0.25
_USED = (TrialState.COMPLETE.value, TrialState.DIVERGED.value)


@dataclass(frozen=True, slots=True)
class ImportanceAnswer:
    """`importances` None with a `reason` when there is none (yet); `n_trials` the finished
    trials it was computed from, `n_finished` how many there are now (more: it is stale)."""

    importances: dict[str, float] | None
    evaluator: str
    n_trials: int
    n_finished: int
    computing: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class _Result:
    n_trials: int
    importances: dict[str, float] | None
    reason: str | None


class ImportanceCache:
    """The latest importance per job (least recently used dropped beyond `capacity`)."""

    def __init__(
        self, session_factory: sessionmaker[Session], *, wait_s: float = WAIT_S, capacity: int = 64
    ) -> None:
        self._sessions = session_factory
        self._wait_s = wait_s
        self._capacity = capacity
        self._results: OrderedDict[uuid.UUID, _Result] = OrderedDict()
        self._running: dict[uuid.UUID, Future[_Result]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="importance")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def get(self, session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> ImportanceAnswer:
        """The importance of a job the caller owns (404 otherwise)."""
        job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
        if job is None:
            raise NotFound(f"no job {job_id}")
        spec = job.spec
        n_now = (
            session.scalar(
                select(func.count())
                .select_from(Trial)
                .where(Trial.job_id == job_id, Trial.state.in_(_USED))
            )
            or 0
        )
        session.rollback()
        with self._lock:
            kept = self._results.get(job_id)
            if kept is not None:
                self._results.move_to_end(job_id)
            if kept is not None and kept.n_trials == n_now:
                return _answer(kept, n_now, computing=False)
            future = self._running.get(job_id)
            if future is None:
                future = self._executor.submit(self._compute, job_id, spec)
                self._running[job_id] = future
        try:
            result = future.result(timeout=self._wait_s)
        except FutureTimeout:
            if kept is None:
                reason = "being computed; it appears at the next update"
                return ImportanceAnswer(None, EVALUATOR, 0, n_now, True, reason)
            return _answer(kept, n_now, computing=True)
        return _answer(result, max(n_now, result.n_trials), computing=False)

    def _compute(self, job_id: uuid.UUID, spec: JobSpec) -> _Result:
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(Trial.params, Trial.value, Trial.diverged_at_step).where(
                        Trial.job_id == job_id, Trial.state.in_(_USED)
                    )
                ).all()
                session.rollback()
            trials = [
                FinishedTrial(
                    params=r.params,
                    value=r.value,
                    diverged_at_step=r.diverged_at_step,
                )
                for r in rows
            ]
            try:
                found = param_importances(spec.space, trials, steps=spec.budget.steps)
                result = _Result(len(trials), found.values, None)
            except NotEnoughTrials as exc:
                result = _Result(len(trials), None, exc.reason)
            except Exception:
                # Not kept: the next request tries again.
                logger.exception("parameter importance of job %s failed", job_id)
                return _Result(-1, None, "could not be computed; see the server's log")
            with self._lock:
                self._results[job_id] = result
                self._results.move_to_end(job_id)
                while len(self._results) > self._capacity:
                    self._results.popitem(last=False)
            return result
        finally:
            with self._lock:
                self._running.pop(job_id, None)


def _answer(result: _Result, n_now: int, *, computing: bool) -> ImportanceAnswer:
    return ImportanceAnswer(
        importances=result.importances,
        evaluator=EVALUATOR,
        n_trials=result.n_trials,
        n_finished=n_now,
        computing=computing,
        reason=result.reason,
    )
