"""Where the API server reads a job's finished trials and fits its recommendation: in a
thread of its own process, or in a child process so that neither holds the server's
interpreter lock.

A fit of a few thousand trials is about a second of numpy and scipy, much of it Python
(the optimiser's loop, the candidate grid), and loading those trials as ORM rows and
records is another few hundred milliseconds of Python: in a thread of the API process both
hold the GIL, so every request that arrives meanwhile waits, and a dashboard that polls
while workers report sees its latency jump (bench/recommendation_serving.py).
``acprop-tuner serve`` therefore reads and fits in child processes (``spawn``: no fork of a
threaded server; each child opens its own connection to the database, and imports numpy,
scipy, SQLAlchemy and optimizer.recommendation, never jax); an
app built in another process (the tests, `acprop-tuner tune`'s in-process server, whose
user script a spawned child would import again) fits in the calling thread unless told
otherwise (``ACPROP_TUNER_RECOMMENDATION_FIT_PROCESS``).

A child that dies (killed, out of memory) fails that fit only: the pool is replaced and the
next fit starts a fresh child.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from optimizer.recommendation import Recommendation, TrialOutcome
from service import job_recommendation
from service.broker.fits import IN_PLACE
from service.db.engine import create_db_engine
from service.db.session import create_session_factory
from service.job_recommendation import JobFit
from service.settings import Settings

__all__ = ["FitterDied", "RecommendationFitter"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a child checks that the server that started it is still there.
PARENT_POLL_S = 1.0


class FitterDied(RuntimeError):
    """The child process running a fit died (killed, out of memory)."""


# A child's own connection to the database (set by _start_child).
_child_engine: Engine | None = None
_child_sessions: sessionmaker[Session] | None = None


def _start_child(settings: Settings, parent: int) -> None:
    global _child_engine, _child_sessions
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    _child_engine = create_db_engine(settings.model_copy(update={"db_pool_size": 1}))
    _child_sessions = create_session_factory(_child_engine)


def _read_and_fit(sessions: sessionmaker[Session], job_id: uuid.UUID) -> tuple[int, JobFit | None]:
    """The job's read and fit (job_recommendation.read_and_fit), and the process that ran it."""
    with sessions() as session:
        return os.getpid(), job_recommendation.read_and_fit(session, job_id)


def _exit_with(parent: int) -> None:
    """End this child once the server that started it is gone (killed with SIGKILL, it
    cannot stop its pool; the child would otherwise wait for work forever)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _started() -> int:
    """Nothing: a child that ran it has imported the fit and opened its database."""
    return os.getpid()


def _in_child(job_id: uuid.UUID) -> tuple[int, JobFit | None]:
    assert _child_sessions is not None, "the child was started without its database"
    return _read_and_fit(_child_sessions, job_id)


def _recommend(records: Sequence[TrialOutcome], status: str) -> tuple[int, Recommendation]:
    return os.getpid(), IN_PLACE.recommend(records, status)


def _candidates(
    records: Sequence[TrialOutcome], n: int, lr_high: float
) -> tuple[int, list[dict[str, float]]]:
    return os.getpid(), IN_PLACE.candidates(records, n, lr_high)


class RecommendationFitter:
    """Reads a job's finished trials and fits them, here (on ``sessions``) or
    (``in_child``) in up to ``max_workers`` children, each with its own connection to the
    database of ``settings``: the server's process then neither loads the trials nor fits."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        *,
        in_child: bool,
        max_workers: int = 2,
    ) -> None:
        self.in_child = in_child
        self.sessions = sessions
        self._settings = settings
        self._max_workers = max_workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        #: The process that ran the last fit (for tests and logs).
        self.last_pid: int | None = None

    def fit_job(self, job_id: uuid.UUID) -> JobFit | None:
        """The job's finished trials read and fitted (None when the job is gone); raises what
        the fit raises, or FitterDied when the child running it died."""
        if not self.in_child:
            return self._ran(*_read_and_fit(self.sessions, job_id))
        return self._in_pool(_in_child, job_id)

    # The lease path's fits (service/broker/fits.py), on records its transaction read.

    # A lease does not fail because a fitting process died: the fit then runs here.

    def recommend(self, records: Sequence[TrialOutcome], status: str) -> Recommendation:
        """``recommend`` on ``records``, in a child (see :meth:`fit_job`), else here."""
        if self.in_child:
            try:
                return self._in_pool(_recommend, list(records), status)
            except FitterDied:
                logger.warning("fitting the lease path's recommendation here instead")
        return self._ran(*_recommend(records, status))

    def candidates(
        self, records: Sequence[TrialOutcome], n: int, lr_high: float = math.inf
    ) -> list[dict[str, float]]:
        """The confirmation stage's candidates on ``records``, in a child, else here."""
        if self.in_child:
            try:
                return self._in_pool(_candidates, list(records), n, lr_high)
            except FitterDied:
                logger.warning("fitting the confirmation stage's candidates here instead")
        return self._ran(*_candidates(records, n, lr_high))

    def _ran(self, pid: int, result: T) -> T:
        self.last_pid = pid
        return result

    def _in_pool(self, fn: Callable[..., tuple[int, T]], *args: Any) -> T:
        pool = self._get_pool()
        try:
            pid, result = pool.submit(fn, *args).result()
        except BrokenProcessPool:
            self._drop_pool(pool)
            raise FitterDied("the process fitting the recommendation died") from None
        return self._ran(pid, result)

    def start(self) -> None:
        """Start a child now (in the background), so that the first fit does not wait
        seconds for its interpreter and imports; nothing when fitting here."""
        if self.in_child:
            self._get_pool().submit(_started)

    def close(self) -> None:
        """Stops the children: queued fits are cancelled, a fit under way (seconds) ends
        first, so the pool's processes and semaphores are gone when the server exits."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self._max_workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(self._settings, os.getpid()),
                )
            return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor) -> None:
        logger.warning("a recommendation fit's process died; starting a fresh one")
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
