"""Where the API server runs a recommendation's fit: in the request's own process, or in a
child process so that a fit never holds the server's interpreter lock.

A fit of a few thousand trials is about a second of numpy and scipy, much of it Python
(the optimiser's loop, the candidate grid): in a thread of the API process it holds the
GIL for most of that second, so every request that arrives meanwhile waits, and a dashboard
that polls while workers report sees its latency jump (bench/recommendation_serving.py).
``acprop-tuner serve`` therefore fits in child processes (``spawn``: no fork of a threaded
server; the children import numpy, scipy and optimizer.recommendation only, never jax); an
app built in another process (the tests, `acprop-tuner tune`'s in-process server, whose
user script a spawned child would import again) fits in the calling thread unless told
otherwise (``ACPROP_TUNER_RECOMMENDATION_FIT_PROCESS``).

A child that dies (killed, out of memory) fails that fit only: the pool is replaced and the
next fit starts a fresh child.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from optimizer.recommendation import Recommendation, TrialOutcome, recommend

__all__ = ["RecommendationFitter"]

logger = logging.getLogger(__name__)


def _fit(records: Sequence[TrialOutcome], status: str) -> tuple[int, Recommendation]:
    """The fit, and the process that ran it."""
    return os.getpid(), recommend(records, status=status)  # type: ignore[arg-type]


class RecommendationFitter:
    """Runs ``recommend`` here, or (``in_child``) in up to ``max_workers`` children."""

    def __init__(self, *, in_child: bool, max_workers: int = 2) -> None:
        self.in_child = in_child
        self._max_workers = max_workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        #: The process that ran the last fit (for tests and logs).
        self.last_pid: int | None = None

    def fit(self, records: Sequence[TrialOutcome], status: str) -> Recommendation:
        """The recommendation; raises what ``recommend`` raises (NotEnoughEvidence...),
        or RuntimeError when the child running it died."""
        if not self.in_child:
            pid, answer = _fit(records, status)
        else:
            pool = self._get_pool()
            try:
                pid, answer = pool.submit(_fit, list(records), status).result()
            except BrokenProcessPool:
                self._drop_pool(pool)
                raise RuntimeError("the process fitting the recommendation died") from None
        self.last_pid = pid
        return answer

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
                )
            return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor) -> None:
        logger.warning("a recommendation fit's process died; starting a fresh one")
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
