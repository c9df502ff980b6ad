"""The API's recommendations, fitted once per change of a job's finished trials, off the
request path.

A job's *revision* is what its answer depends on: whether it still runs (``provisional``) or
has ended (``final``), how many trials finished with a result (complete or diverged), and
when the last of them finished. A request reads the revision (with the job's ownership, one
query: job_recommendation.owned_revision) and answers from the last fit of the job:

- fitted on this revision: that answer (or the 409 with the reason while the evidence
  supports none), ``freshness.current``;
- otherwise it starts a fit in the background, or, while one runs, marks the job dirty: at
  most one fit per job runs at a time, and all the changes seen meanwhile make one follow-up
  fit (a follow-up that finds nothing new since the last fit fits nothing);
- a provisional answer of an older revision is served at once, saying which trials it used,
  how many finished since and how old it is (``freshness``), while it is at most
  ``max_lag_s`` old (seconds since its trials were read);
- with no such answer (none yet, only an older 409, one past the bound, or a job that ended:
  its ``final`` answer is the exact fit on all its trials, never an older one) the request
  waits for the fit, until that fit has run ``wait_s``; then it serves the older answer (a
  job that ended: as ``provisional``) if there is one within the bound, else 409
  ``computing`` with ``Retry-After``;
- a fit that fails (any exception but the lack of evidence) is logged; the requests that
  waited for it get 409 ``recommendation_failed`` with the reason, and the next request
  fits again.

The cache lives in the API process: each process of a deployment fits each revision once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from optimizer.recommendation import Recommendation
from service.errors import Conflict
from service.job_recommendation import Revision, read_revision
from service.recommendation_fitter import RecommendationFitter
from service.recommendation_schemas import Freshness, RecommendationOut

__all__ = ["RecommendationCache", "RecommendationComputing", "RecommendationFailed"]

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 2


class RecommendationComputing(Conflict):
    """409: no answer can be served yet; one is being computed (``Retry-After``)."""

    error = "computing"


class RecommendationFailed(Conflict):
    """409: the fit failed (logged); the next request fits again."""

    error = "recommendation_failed"


@dataclass(frozen=True)
class _Fitted:
    revision: Revision
    answer: Recommendation | None
    reason: str | None  # why there is none (the 409's detail) when ``answer`` is None
    read_at: float  # time.monotonic() when its trials were read


@dataclass
class _JobFits:
    fitted: _Fitted | None = None
    running: bool = False
    dirty: bool = False
    started_at: float = 0.0
    failures: int = 0
    last_failure: str = ""


class RecommendationCache:
    """Answers per job, fitted in background threads (at most ``max_fits`` at once)."""

    def __init__(
        self,
        fitter: RecommendationFitter,
        *,
        wait_s: float,
        max_lag_s: float,
        max_jobs: int = 256,
        max_fits: int = 2,
        on_fit: Callable[[], object] = lambda: None,
    ) -> None:
        self.fitter = fitter
        self.wait_s = wait_s
        self.max_lag_s = max_lag_s
        self._max_jobs = max_jobs
        self._jobs: OrderedDict[uuid.UUID, _JobFits] = OrderedDict()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._fit_slots = threading.BoundedSemaphore(max_fits)
        self._closed = False
        self._on_fit = on_fit
        #: Fits run so far (a fit that found the evidence too thin included).
        self.fits = 0

    def close(self) -> None:
        """No follow-up fits from now on (a fit under way finishes in its daemon thread)."""
        with self._lock:
            self._closed = True
        self.fitter.close()

    def answer(self, job_id: uuid.UUID, revision: Revision, asked: float) -> RecommendationOut:
        """The job's answer as described above, for its ``revision`` read by the caller
        (job_recommendation.owned_revision) at ``asked`` (time.monotonic())."""
        with self._lock:
            fits = self._state(job_id)
            failures = fits.failures
            if not _fresh(fits.fitted, revision, asked):
                self._refit(job_id, fits)
                if self._servable(fits.fitted, revision) is None:
                    self._wait(fits, revision, asked, failures)
            fitted, refitting = fits.fitted, fits.running
            failed = fits.last_failure if fits.failures > failures else None
        return self._reply(job_id, revision, asked, fitted, refitting, failed)

    # -- serving ------------------------------------------------------------------------

    def _servable(self, fitted: _Fitted | None, revision: Revision) -> Recommendation | None:
        """An older answer that may stand in for ``revision``'s while it is fitted."""
        if fitted is None or fitted.answer is None or revision.status == "final":
            return None
        if time.monotonic() - fitted.read_at > self.max_lag_s:
            return None
        return fitted.answer

    def _wait(self, fits: _JobFits, revision: Revision, asked: float, failures: int) -> None:
        while not _fresh(fits.fitted, revision, asked) and fits.failures == failures:
            # Until the fit under way has run wait_s (so a slow fit holds up no request
            # for longer), and never past wait_s of this request.
            deadline = min(asked, fits.started_at) + self.wait_s
            remaining = deadline - time.monotonic()
            if not fits.running or remaining <= 0:
                return
            self._changed.wait(remaining)

    def _reply(
        self,
        job_id: uuid.UUID,
        revision: Revision,
        asked: float,
        fitted: _Fitted | None,
        refitting: bool,
        failed: str | None,
    ) -> RecommendationOut:
        if fitted is not None and _fresh(fitted, revision, asked):
            if fitted.answer is None:
                raise Conflict(fitted.reason)
            return RecommendationOut.of(
                fitted.answer, self._freshness(fitted, fitted.revision.n_used, False)
            )
        if failed is not None:
            raise RecommendationFailed(
                f"the recommendation of job {job_id} could not be computed ({failed}); "
                "this was logged, and the next request computes it again"
            )
        stale = self._servable(fitted, replace(revision, status="provisional"))
        if stale is None or fitted is None:
            before = ""
            if fitted is not None and fitted.reason:
                before = f"; on {fitted.revision.n_used} trials: {fitted.reason}"
            raise RecommendationComputing(
                f"the recommendation of job {job_id} is being computed from "
                f"{revision.n_used} finished trials{before}; ask again",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        return RecommendationOut.of(stale, self._freshness(fitted, revision.n_used, refitting))

    def _freshness(self, fitted: _Fitted, n_finished: int, refitting: bool) -> Freshness:
        used = fitted.revision.n_used
        return Freshness(
            current=n_finished == used and not refitting,
            trials_used=used,
            trials_finished=n_finished,
            trials_behind=n_finished - used,
            age_s=round(time.monotonic() - fitted.read_at, 3),
            refitting=refitting,
            max_lag_s=self.max_lag_s,
        )

    # -- fitting ------------------------------------------------------------------------

    def _state(self, job_id: uuid.UUID) -> _JobFits:
        fits = self._jobs.get(job_id)
        if fits is None:
            fits = self._jobs[job_id] = _JobFits()
            idle = [k for k, v in self._jobs.items() if not v.running and k != job_id]
            for key in idle[: max(0, len(self._jobs) - self._max_jobs)]:
                del self._jobs[key]
        self._jobs.move_to_end(job_id)
        return fits

    def _refit(self, job_id: uuid.UUID, fits: _JobFits) -> None:
        if fits.running:
            fits.dirty = True
            return
        fits.running, fits.dirty, fits.started_at = True, False, time.monotonic()
        threading.Thread(
            target=self._fit_loop, args=(job_id, fits), name=f"fit-{job_id}", daemon=True
        ).start()

    def _fit_loop(self, job_id: uuid.UUID, fits: _JobFits) -> None:
        while True:
            try:
                with self._fit_slots:
                    self._fit_once(job_id, fits)
            except Exception as exc:
                logger.exception("the recommendation of job %s could not be computed", job_id)
                with self._lock:
                    fits.failures += 1
                    fits.last_failure = f"{type(exc).__name__}: {exc}"[:300]
            with self._changed:
                self._changed.notify_all()
                if fits.dirty and not self._closed:
                    fits.dirty, fits.started_at = False, time.monotonic()
                    continue
                fits.running = False
                return

    def _fit_once(self, job_id: uuid.UUID, fits: _JobFits) -> None:
        with self.fitter.sessions() as session:
            read_at = time.monotonic()
            revision = read_revision(session, job_id)
            session.rollback()
        if revision is None:  # the job was deleted meanwhile
            return
        with self._lock:
            if fits.fitted is not None and fits.fitted.revision == revision:
                fits.fitted = replace(fits.fitted, read_at=read_at)  # nothing new: no fit
                return
        result = self.fitter.fit_job(job_id)  # reads the trials again: as new, or newer
        if result is None:  # the job was deleted meanwhile
            return
        with self._lock:
            self.fits += 1
        self._on_fit()
        logger.info(
            "fitted the %s recommendation of job %s on %d trials in %.2f s",
            result.revision.status,
            job_id,
            result.revision.n_used,
            result.seconds,
        )
        with self._lock:
            fits.fitted = _Fitted(result.revision, result.answer, result.reason, result.read_at)


def _fresh(fitted: _Fitted | None, revision: Revision, asked: float) -> bool:
    """Whether ``fitted`` answers for ``revision``: fitted on it, or on trials read after the
    request read it (as new, or newer)."""
    if fitted is None:
        return False
    return fitted.revision == revision or (
        fitted.read_at >= asked
        and (fitted.revision.status == "final" or revision.status != "final")
    )
