"""The recommendation endpoint serves answers fitted in the background (issue 19,
service/recommendation_cache.py): one fit per change of a job's finished trials however many
ask, the answer on older trials while a newer fit runs (saying which trials it used), the
``final`` answer exactly the fit on all trials, and a failing fit a 409 that the next request
can undo. The fit is counted (and held, where a test needs it running) by wrapping the
module-level function the cache calls. Runs on SQLite and Postgres.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from optimizer.recommendation import recommend
from optimizer.tuning.confirmation import candidates
from service import job_recommendation
from service.db.models import BaselineKind, BaselineRun, Job, KeyScope, Trial, TrialSource
from service.job_recommendation import USED_STATES, trial_record
from service.recommendation_cache import RecommendationCache
from service.recommendation_fitter import RecommendationFitter
from tests.support.api import run_trials
from tests.support.databases import KeyFactory

N_TRIALS = 30


class CountedFit:
    """The real fit, counted; held at a gate until ``release`` when ``held``."""

    def __init__(self, *, held: bool = False, error: Exception | None = None) -> None:
        self.real: Callable[..., Any] = job_recommendation.fit
        self.calls = 0
        self.error = error
        self._gate = threading.Event()
        if not held:
            self._gate.set()
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        self._gate.wait(120)
        if self.error is not None:
            raise self.error
        return self.real(*args, **kwargs)

    def release(self) -> None:
        self._gate.set()


@pytest.fixture
def cache(app: FastAPI, client: TestClient) -> RecommendationCache:
    recommendations: RecommendationCache = app.state.recommendations
    return recommendations


def _job_body(seed: int, **fields: Any) -> dict[str, Any]:
    """A job of N_TRIALS random trials on rosenbrock (``fields`` added, e.g. its baselines)."""
    return {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": N_TRIALS, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "random",
        "seed": seed,
        **fields,
    }


@pytest.fixture
def job(client: TestClient, make_key: KeyFactory) -> Iterator[dict[str, Any]]:
    """A seeded job of 30 trials (below the synthetic edge most of them), 20 of them done,
    with the answer on those 20 fitted."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    r = client.post("/api/v1/jobs", json=_job_body(seed=0, baselines=[]), headers=user.headers)
    assert r.status_code == 201, r.text
    url = f"/api/v1/jobs/{r.json()['id']}/recommendation"
    run_trials(client, worker, 20)
    first = client.get(url, headers=user.headers)
    assert first.status_code == 200, first.text
    assert first.json()["freshness"]["current"] and first.json()["freshness"]["trials_used"] == 20
    yield {"id": r.json()["id"], "url": url, "user": user.headers, "worker": worker}


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    """A liveness bound (not a timing claim): the background fit ends."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _get(client: TestClient, job: dict[str, Any]) -> Any:
    return client.get(job["url"], headers=job["user"])


def test_concurrent_requests_for_a_stale_answer_cause_one_fit_and_get_the_stale_answer(
    client: TestClient, job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_trials(client, job["worker"], 5)  # 25 of 30 finished: the answer on 20 is stale
    fit = CountedFit(held=True)
    monkeypatch.setattr(job_recommendation, "fit", fit)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: _get(client, job), range(20)))

    # Every request was answered while the one refit is held: with the answer on 20 trials,
    # saying so.
    for r in replies:
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["status"] == "provisional"
        assert rec["evidence"]["n_trials"] <= 20
        fresh = rec["freshness"]
        assert fresh["current"] is False and fresh["refitting"] is True
        assert (fresh["trials_used"], fresh["trials_finished"], fresh["trials_behind"]) == (
            20,
            25,
            5,
        )
        assert 0 <= fresh["age_s"] <= fresh["max_lag_s"]
    _until(lambda: fit.calls >= 1, "the refit to start")
    fit.release()
    _until(lambda: _get(client, job).json()["freshness"]["current"], "the refit")
    rec = _get(client, job).json()
    assert rec["freshness"]["trials_used"] == 25 and rec["freshness"]["trials_behind"] == 0
    assert fit.calls == 1  # 20 requests (and the polls after): one fit


def test_the_final_answer_is_the_fit_on_all_trials(
    client: TestClient, app: FastAPI, job: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fit = CountedFit()
    monkeypatch.setattr(job_recommendation, "fit", fit)
    run_trials(client, job["worker"], 100)  # the rest: the job ends
    r = _get(client, job)
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "final" and fit.calls == 1
    assert final["freshness"]["current"] and final["freshness"]["trials_behind"] == 0

    with app.state.session_factory() as session:
        rows = session.scalars(
            select(Trial).where(Trial.job_id == uuid.UUID(job["id"]), Trial.state.in_(USED_STATES))
        ).all()
        expected = recommend([trial_record(t) for t in rows], status="final").to_dict()
    assert final["freshness"]["trials_used"] == len(rows) == N_TRIALS
    served = {k: v for k, v in final.items() if k in expected}
    for filled_in in ("job_id", "versions", "warnings"):  # the service's additions
        served.pop(filled_in), expected.pop(filled_in)
    assert served == expected
    again = _get(client, job).json()
    assert again.pop("freshness")["current"] and fit.calls == 1  # served, not fitted again
    assert again == {k: v for k, v in final.items() if k != "freshness"}


def test_a_failing_fit_is_a_409_with_a_reason_and_the_next_request_fits_again(
    client: TestClient,
    job: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_trials(client, job["worker"], 100)  # the job ends: its answer needs a fit
    broken = CountedFit(error=RuntimeError("the fit broke"))
    monkeypatch.setattr(job_recommendation, "fit", broken)
    with caplog.at_level(logging.ERROR, logger="service.recommendation_cache"):
        r = _get(client, job)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "recommendation_failed"
    assert "RuntimeError: the fit broke" in r.json()["detail"]
    assert any("could not be computed" in rec.getMessage() for rec in caplog.records)

    monkeypatch.setattr(job_recommendation, "fit", broken.real)
    r = _get(client, job)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "final" and r.json()["freshness"]["current"]


def test_no_servable_answer_while_a_slow_fit_runs_is_a_409_computing(
    client: TestClient,
    job: dict[str, Any],
    cache: RecommendationCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job ended and a request waits no longer than ``wait_s`` (0 here) for its final
    fit: the provisional answer stands in, as provisional, while within the lag bound; past
    it, nothing does."""
    run_trials(client, job["worker"], 100)
    fit = CountedFit(held=True)
    monkeypatch.setattr(job_recommendation, "fit", fit)
    monkeypatch.setattr(cache, "wait_s", 0.0)
    r = _get(client, job)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "provisional"
    assert r.json()["freshness"]["refitting"] and r.json()["freshness"]["trials_used"] == 20

    monkeypatch.setattr(cache, "max_lag_s", 1e-6)  # the provisional answer is past the bound
    r = _get(client, job)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "computing" and r.headers["Retry-After"]
    assert f"from {N_TRIALS} finished trials" in r.json()["detail"]
    fit.release()
    monkeypatch.setattr(cache, "wait_s", 60.0)
    r = _get(client, job)
    assert r.status_code == 200 and r.json()["status"] == "final", r.text
    assert fit.calls == 1


@pytest.fixture
def child_fitter(app: FastAPI, cache: RecommendationCache) -> Iterator[RecommendationFitter]:
    """The cache reads and fits in a child process, as under ``acprop-tuner serve``."""
    in_thread = cache.fitter
    fitter = RecommendationFitter(
        app.state.session_factory, app.state.settings, in_child=True, max_workers=1
    )
    cache.fitter = fitter
    yield fitter
    cache.fitter = in_thread
    fitter.close()


def test_a_fit_in_a_child_process_is_the_fit_on_all_trials(
    client: TestClient, app: FastAPI, job: dict[str, Any], child_fitter: RecommendationFitter
) -> None:
    run_trials(client, job["worker"], 100)  # the job ends: its final answer is fitted
    r = _get(client, job)
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "final" and final["freshness"]["current"]
    assert child_fitter.last_pid is not None and child_fitter.last_pid != os.getpid()
    with app.state.session_factory() as session:
        rows = session.scalars(
            select(Trial).where(Trial.job_id == uuid.UUID(job["id"]), Trial.state.in_(USED_STATES))
        ).all()
        expected = recommend([trial_record(t) for t in rows], status="final").to_dict()
    for key in ("learning_rate", "eps_root", "lr_interval", "evidence", "risk"):
        assert final[key] == expected[key], key


def test_a_killed_fitting_process_fails_one_fit_and_the_next_starts_a_fresh_one(
    client: TestClient, job: dict[str, Any], child_fitter: RecommendationFitter
) -> None:
    run_trials(client, job["worker"], 3)  # 23 finished: a refit in the child
    _until(lambda: _get(client, job).json()["freshness"]["current"], "the first child fit")
    first_child = child_fitter.last_pid
    assert first_child is not None and first_child != os.getpid()
    os.kill(first_child, signal.SIGKILL)
    _until(lambda: not _alive(first_child), "the child to die")

    run_trials(client, job["worker"], 100)  # the job ends: its final fit meets a dead pool
    r = _get(client, job)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "recommendation_failed"
    assert "died" in r.json()["detail"]
    r = _get(client, job)  # the next request fits again, in a fresh child
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "final"
    assert child_fitter.last_pid not in (None, first_child, os.getpid())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_current_answer_costs_the_key_and_one_query(
    app: FastAPI, client: TestClient, job: dict[str, Any]
) -> None:
    """Each database round trip of a request waits for the server's interpreter lock again
    while workers report; a current answer reads the key, then the job's ownership, revision
    and number of baseline runs in one query (its baseline runs only when it has some)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", record)
    try:
        r = _get(client, job)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", record)
    assert r.status_code == 200, r.text
    assert r.json()["freshness"]["current"]
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2, reads
    assert "acprop_api_keys" in reads[0], reads[0]
    assert "acprop_baseline_runs" in reads[1] and "acprop_trials" in reads[1], reads[1]


def test_the_lease_paths_fits_run_in_the_child_and_equal_the_fits_here(
    app: FastAPI,
    client: TestClient,
    make_key: KeyFactory,
    child_fitter: RecommendationFitter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The confirmation stage's candidates and the baselines' check are fitted in the
    lease path, under the job's row lock: with the broker fitting in a child (as under
    ``acprop-tuner serve``), the candidates and the check are those fitted here."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    # The default baselines: the job ends with its check.
    r = client.post("/api/v1/jobs", json=_job_body(seed=1), headers=user.headers)
    assert r.status_code == 201, r.text
    job_id = uuid.UUID(r.json()["id"])
    monkeypatch.setattr(app.state.broker, "fits", child_fitter)

    run_trials(client, worker, 100)  # to the end, baseline runs included

    assert child_fitter.last_pid is not None and child_fitter.last_pid != os.getpid()
    with app.state.session_factory() as session:
        trials = session.scalars(
            select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)
        ).all()
        confirming = [t.params for t in trials if t.source == TrialSource.CONFIRMATION.value]
        before = [
            trial_record(t)
            for t in trials
            if t.source != TrialSource.CONFIRMATION.value and t.state in USED_STATES
        ]
        used = [trial_record(t) for t in trials if t.state in USED_STATES]
        check = session.scalars(
            select(BaselineRun).where(
                BaselineRun.job_id == job_id, BaselineRun.kind == BaselineKind.CHECK.value
            )
        ).one()
        lr_high = float(session.get(Job, job_id).spec.space.learning_rate.high)  # type: ignore[union-attr]
    assert confirming, "the job had a confirmation stage"
    assert confirming == candidates(before, len(confirming), lr_high=lr_high)
    assert check.settings == recommend(used, status="final").config


def test_the_lease_paths_fits_outlive_a_killed_fitting_process(
    app: FastAPI, job: dict[str, Any], child_fitter: RecommendationFitter
) -> None:
    """A lease never fails because a fitting process died: the fit then runs in the
    server's own thread (the cache's fit, by contrast, reports the death: see above)."""
    with app.state.session_factory() as session:
        rows = session.scalars(
            select(Trial).where(Trial.job_id == uuid.UUID(job["id"]), Trial.state.in_(USED_STATES))
        ).all()
        records = [trial_record(t) for t in rows]
    first = child_fitter.recommend(records, "provisional")
    child = child_fitter.last_pid
    assert child is not None and child != os.getpid()
    os.kill(child, signal.SIGKILL)
    _until(lambda: not _alive(child), "the child to die")

    again = child_fitter.recommend(records, "provisional")
    assert child_fitter.last_pid == os.getpid()
    assert again.config == first.config
    assert child_fitter.candidates(records, 3) == candidates(records, 3)
