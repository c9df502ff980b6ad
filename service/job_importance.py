"""A job's parameter importance (optimizer/tuning/importance.py), computed off the request
path and kept per job.

It depends only on the job's finished trials with a result for the sampler (complete and
diverged), so an answer stays current while their number does not change. A request that
finds the kept answer current returns it after one count query. Otherwise it returns the kept
answer at once, marked `computing`, and hands a new computation to this process's importance
thread (one thread: however many pages poll, this never takes more than one core), unless one
for that job is under way or the last one ended less than `PAUSE` times its own duration ago:
so a job whose trials finish every second (0.6 s to compute at 5,000 trials) costs at most a
tenth of a core, and its answer lags by a few seconds. Only a job with nothing kept yet waits,
up to `WAIT_S`, for its first answer, and only one of at most `WAIT_UP_TO` finished trials.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from pydantic_core import from_json
from sqlalchemy import Text, cast, func, select
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

__all__ = ["PAUSE", "WAIT_S", "WAIT_UP_TO", "ImportanceAnswer", "ImportanceCache"]

logger = logging.getLogger(__name__)
_COMPUTING = "being computed; it appears at the next update"

WAIT_S = 0.25
# Above this many finished trials the first answer takes longer than WAIT_S on a busy server
# (a database read of every one of them, then the evaluator), so the request does not wait:
# it would only hold up the page's first render, which shows "being computed" either way.
WAIT_UP_TO = 2_000
PAUSE = 9.0  # idle time after a computation, in multiples of its duration
_USED = (TrialState.COMPLETE.value, TrialState.DIVERGED.value)


@dataclass(frozen=True, slots=True)
class ImportanceAnswer:
    """`importances` None with a `reason` when there is none (yet); `n_trials` the finished
    trials it was computed from (`n_read` of them read: optimizer/tuning/importance.py),
    `n_finished` how many there are now (more: it is stale)."""

    importances: dict[str, float] | None
    evaluator: str
    n_trials: int
    n_finished: int
    computing: bool
    reason: str | None
    n_read: int = 0


@dataclass(frozen=True, slots=True)
class _Result:
    n_trials: int
    importances: dict[str, float] | None
    reason: str | None
    n_read: int


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
        self._not_before: dict[uuid.UUID, float] = {}  # monotonic time of the next start
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
            if future is None and time.monotonic() >= self._not_before.get(job_id, 0.0):
                future = self._executor.submit(self._compute, job_id, spec)
                self._running[job_id] = future
        if kept is not None:
            return _answer(kept, n_now, computing=True)
        if future is None or n_now > WAIT_UP_TO:  # (None: paused after a failed computation)
            return ImportanceAnswer(None, EVALUATOR, 0, n_now, True, _COMPUTING)
        try:
            result = future.result(timeout=self._wait_s)
        except FutureTimeout:
            return ImportanceAnswer(None, EVALUATOR, 0, n_now, True, _COMPUTING)
        return _answer(result, max(n_now, result.n_trials), computing=False)

    def _compute(self, job_id: uuid.UUID, spec: JobSpec) -> _Result:
        started = time.monotonic()
        try:
            with self._sessions() as session:
                rows = session.execute(
                    select(
                        Trial.number,
                        cast(Trial.params, Text).label("params"),
                        Trial.value,
                        Trial.diverged_at_step,
                    ).where(Trial.job_id == job_id, Trial.state.in_(_USED))
                ).all()
                session.rollback()
            # The parameters as text, parsed in one call (not one per row: trial_feed.py).
            params = from_json("[" + ",".join(r.params or "null" for r in rows) + "]")
            trials = [
                FinishedTrial(
                    params=p or {},
                    value=r.value,
                    diverged_at_step=r.diverged_at_step,
                    number=r.number,
                )
                for r, p in zip(rows, params, strict=True)
            ]
            try:
                found = param_importances(spec.space, trials, steps=spec.budget.steps)
                result = _Result(len(trials), found.values, None, found.n_trials)
            except NotEnoughTrials as exc:
                result = _Result(len(trials), None, exc.reason, 0)
            except Exception:
                # Not kept: the next request tries again.
                logger.exception("parameter importance of job %s failed", job_id)
                return _Result(-1, None, "could not be computed; see the server's log", 0)
            with self._lock:
                self._results[job_id] = result
                self._results.move_to_end(job_id)
                while len(self._results) > self._capacity:
                    self._results.popitem(last=False)
            return result
        finally:
            ended = time.monotonic()
            with self._lock:
                self._running.pop(job_id, None)
                self._not_before[job_id] = ended + PAUSE * (ended - started)
                while len(self._not_before) > 4 * self._capacity:
                    self._not_before.pop(next(iter(self._not_before)))


def _answer(result: _Result, n_now: int, *, computing: bool) -> ImportanceAnswer:
    return ImportanceAnswer(
        importances=result.importances,
        evaluator=EVALUATOR,
        n_trials=result.n_trials,
        n_finished=n_now,
        computing=computing,
        reason=result.reason,
        n_read=result.n_read,
    )
