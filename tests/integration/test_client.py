"""The Python client (acprop_tuner.client) against a real uvicorn server, on SQLite and Postgres.

Every answer here is a real one from the service: submissions (and a retried submission whose
first answer was lost), listing in pages, trials read incrementally, cancel, delete, the
recommendation before and after a synthetic worker finishes the trials, and each error class
(401, 403, 404, 409, 422, 429 from a low rate limit, no server at all). The API key must
never appear in a repr, a message or a log line.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from acprop_tuner.client import (
    Conflict,
    Dataset,
    Forbidden,
    InvalidRequest,
    Job,
    NotFound,
    RateLimited,
    TunerClient,
    TunerError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
    _transport,
)
from service.app import create_app
from service.db.models import KeyScope
from tests.support.api import run_trials, serve
from tests.support.databases import Key, KeyFactory, make_settings
from tests.support.datasets import npz, tabular

SMALL = {"n_trials": 16, "steps": 20, "seeds": 2, "report_every": 5}


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with serve(app) as base_url:
        yield base_url


@pytest.fixture
def user(make_key: KeyFactory) -> Key:
    return make_key()


@pytest.fixture
def tuner(url: str, user: Key) -> Iterator[TunerClient]:
    with TunerClient(url, token=user.secret, timeout=10) as client:
        yield client


def finish_trials(url: str, user: Key, make_key: KeyFactory) -> None:
    """A worker of the user's tenant that trains nothing: it completes every trial."""
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    with httpx.Client(base_url=url, timeout=10) as http:
        run_trials(http, worker.headers, 1000)  # type: ignore[arg-type]


def assert_secret_free(secret: str, *things: object) -> None:
    for thing in things:
        assert secret not in repr(thing) and secret not in str(thing)
        if isinstance(thing, TunerError):
            assert secret not in repr(thing.detail)


def test_submit_returns_the_job_with_every_default(tuner: TunerClient) -> None:
    job = tuner.submit("rosenbrock", budget={"n_trials": 12}, name="lr-search")
    assert isinstance(job, Job)
    assert job.name == "lr-search" and job.task == "rosenbrock" and job.status == "queued"
    assert job.budget.n_trials == 12 and job.budget.steps == 500  # rosenbrock's default_steps
    assert job.space["learning_rate"] == {"low": 1e-5, "high": 1.0, "log": True}
    assert job.space["b1"] == {"value": 0.9}
    assert job.progress.n_trials == 12 and job.progress.finished == 0
    assert not job.done and job.best_value is None
    assert tuner.job(job.id) == job
    assert job.seed is None
    seeded = tuner.submit("rosenbrock", budget={"n_trials": 12}, seed=42)
    assert seeded.seed == 42 and tuner.job(seeded.id).seed == 42


class LoseFirstAnswer(httpx.BaseTransport):
    """Delivers each request to the server, but loses the answer to the first one of
    `method` (as a dropped connection would), so the client has to retry a request that
    went through."""

    def __init__(self, method: str) -> None:
        self.inner = httpx.HTTPTransport()
        self.method = method
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == self.method and not self.lost:
            self.lost += 1
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_retried_submission_returns_the_first_job(url: str, user: Key) -> None:
    transport = LoseFirstAnswer("POST")
    with TunerClient(url, token=user.secret, transport=transport) as client:
        job = client.submit("rosenbrock", budget=SMALL)
        assert transport.lost == 1
        assert [j.id for j in client.jobs()] == [job.id]  # one job, not two

        # The same key again: the first job; the same key for another job: 409.
        again = client.submit("rosenbrock", budget=SMALL, idempotency_key="k-1")
        assert client.submit("rosenbrock", budget=SMALL, idempotency_key="k-1").id == again.id
        with pytest.raises(Conflict) as exc:
            client.submit("mlp-digits", idempotency_key="k-1")
        assert exc.value.status == 409 and "Idempotency-Key" in str(exc.value)


def test_jobs_are_listed_newest_first_across_pages(tuner: TunerClient) -> None:
    ids = [tuner.submit("rosenbrock", budget=SMALL, warm_start=False).id for _ in range(5)]
    assert [j.id for j in tuner.jobs(page_size=2)] == ids[::-1]
    tuner.cancel(ids[1])
    assert [j.id for j in tuner.jobs(status="cancelled")] == [ids[1]]
    assert [j.id for j in tuner.jobs(status="queued", page_size=1)] == [
        i for i in ids[::-1] if i != ids[1]
    ]


def test_trials_are_read_in_pages_and_incrementally(tuner: TunerClient) -> None:
    job = tuner.submit("rosenbrock", budget=SMALL)  # the warm-start sweep: 6 waiting trials
    trials = tuner.trials(job.id)
    assert [t.number for t in trials] == list(range(len(trials))) and len(trials) >= 4
    assert {t.state for t in trials} == {"waiting"} and {t.source for t in trials} == {"warmup"}
    assert tuner.trials(job.id, page_size=2) == trials
    newer = tuner.trials(job.id, after=trials[2].number)
    assert newer == trials[3:]
    assert tuner.trials(job.id, after=trials[-1].number) == []


def test_cancel_and_delete(url: str, tuner: TunerClient, user: Key) -> None:
    job = tuner.submit("rosenbrock", budget=SMALL)
    with pytest.raises(WaitTimeout, match="still queued"):
        tuner.wait(job.id, timeout=0.2, poll_s=0.05)
    cancelled = tuner.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.done and cancelled.cancelled_at
    assert tuner.cancel(job.id).status == "cancelled"  # a no-op, as the service promises
    tuner.delete(job.id)
    with pytest.raises(NotFound):
        tuner.job(job.id)
    with pytest.raises(NotFound):
        tuner.delete(job.id)

    # A delete whose answer was lost is retried; the retry's 404 means it is done.
    other = tuner.submit("rosenbrock", budget=SMALL)
    transport = LoseFirstAnswer("DELETE")
    with TunerClient(url, token=user.secret, transport=transport) as client:
        client.delete(other.id)
    assert transport.lost == 1
    with pytest.raises(NotFound):
        tuner.job(other.id)


def test_recommendation_appears_once_trials_finish(
    url: str, tuner: TunerClient, user: Key, make_key: KeyFactory
) -> None:
    # eps_root fixed at 1e-8 puts the synthetic divergence edge (3e-2) above the range: every
    # draw of the random sampler then gives a recommendation (with the edge inside the range,
    # about 1 in 6 small jobs got none: "no learning rate tried stays a factor 3 below", with
    # the margin of 3 used then).
    space = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "eps_root": {"value": 1e-8}}
    job = tuner.submit("rosenbrock", budget=SMALL, space=space, sampler="random")
    assert tuner.recommendation(job.id) is None
    with pytest.raises(Conflict, match="no recommendation"):
        tuner.recommendation(job.id, missing_ok=False)

    seen: list[Job] = []
    worker = threading.Thread(target=finish_trials, args=(url, user, make_key))
    worker.start()
    try:
        done = tuner.wait(job.id, timeout=60, poll_s=0.05, on_progress=seen.append)
    finally:
        worker.join(60)
    assert done.status == "finished" and done.progress.finished == 16
    assert seen[-1] == done and seen[0].progress.finished < 16
    assert all(a != b for a, b in itertools.pairwise(seen))  # only changes

    rec = tuner.recommendation(job.id, missing_ok=False)
    assert rec is not None and rec.status == "final" and rec.job_id == job.id
    assert rec.lr_interval[0] <= rec.learning_rate <= rec.lr_interval[1]
    assert rec.optax.startswith("optax.contrib.acprop(learning_rate=")
    assert set(rec.config) == {"learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"}
    assert rec.evidence.n_trials == 16 and rec.evidence.n_trials_used > 0
    trials = tuner.trials(job.id)
    assert len(trials) == 16 and all(t.state in ("complete", "diverged") for t in trials)
    assert any(t.value is not None and t.final_losses for t in trials)

    with pytest.raises(Conflict, match="cannot become cancelled"):
        tuner.cancel(job.id)


def test_each_error_class_from_real_answers(
    url: str, tuner: TunerClient, user: Key, make_key: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[TunerError] = []
    with (
        TunerClient(url, token="acpt_not-a-real-key") as stranger,
        pytest.raises(Unauthorized) as e,
    ):
        stranger.job(uuid.uuid4())
    assert e.value.status == 401 and e.value.error == "unauthorized"
    errors.append(e.value)

    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    with TunerClient(url, token=worker.secret) as wrong_scope, pytest.raises(Forbidden) as e:
        list(wrong_scope.jobs())
    errors.append(e.value)

    for missing in (str(uuid.uuid4()), "not-a-job", "../leases"):
        with pytest.raises(NotFound) as e:
            tuner.job(missing)
        assert e.value.status == 404
        errors.append(e.value)

    with pytest.raises(InvalidRequest) as bad:
        tuner.submit("rosenbrock", budget={"n_trials": 0}, space={"b1": {"value": 1.5}})
    assert bad.value.status == 422 and bad.value.error == "validation_error"
    assert set(bad.value.fields) == {"body.budget.n_trials", "body.space.b1"}
    assert "body.budget.n_trials" in str(bad.value)
    errors.append(bad.value)

    with pytest.raises(InvalidRequest) as bad:
        tuner.submit("no-such-task")
    assert bad.value.fields == ["body.task.name"]
    errors.append(bad.value)

    started = time.monotonic()
    nowhere = TunerClient("http://127.0.0.1:9", token=user.secret, max_retries=1)
    with nowhere, pytest.raises(Unavailable) as down:
        nowhere.job(uuid.uuid4())
    assert down.value.status is None and time.monotonic() - started < 5
    assert "unreachable; retrying" in caplog.text  # one retry, then the error
    errors.append(down.value)

    assert_secret_free(user.secret, tuner, *errors)
    assert_secret_free(worker.secret, *errors)
    assert user.secret not in caplog.text and worker.secret not in caplog.text


def test_rate_limit_is_retried_or_raised_with_retry_after(
    database_url: str,
    tmp_path: Path,
    user: Key,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A second API process on the same database, with one request per second per key.
    limited = create_app(
        make_settings(
            database_url,
            tmp_path,
            rate_limit_per_s=1.0,
            rate_limit_burst=1,
            quota_trials_per_job=20,
        )
    )
    # Every wait the client makes, recorded (no timing of the machine, which may be loaded).
    slept: list[float] = []
    real_sleep = _transport.time.sleep

    def recorded_sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(_transport.time, "sleep", recorded_sleep)
    with serve(limited) as limited_url:
        impatient = TunerClient(limited_url, token=user.secret, max_retry_wait_s=0.5)
        patient = TunerClient(limited_url, token=user.secret, max_retry_wait_s=5)
        with impatient, patient:
            assert list(impatient.jobs()) is not None
            slept.clear()  # (serving the app waited too)
            with pytest.raises(RateLimited) as e:
                list(impatient.jobs())
            assert slept == []  # asked to wait longer than allowed: raised, without waiting
            assert e.value.status == 429 and e.value.error == "rate_limited"
            assert e.value.retry_after_s == 1.0

            # Waits out the Retry-After (about a second) and gets its answer.
            assert list(patient.jobs()) is not None
            assert slept and sum(slept) >= 0.9

            time.sleep(1.0)
            with pytest.raises(InvalidRequest) as quota:  # a limit waiting cannot clear
                patient.submit("rosenbrock", budget={"n_trials": 21})
            assert quota.value.status == 422 and quota.value.error == "over_limit"
            assert quota.value.fields == ["body.budget.n_trials"]
            assert "budget.n_trials" in str(quota.value)
    assert_secret_free(user.secret, impatient, e.value, quota.value)
    assert user.secret not in caplog.text


def test_the_client_needs_only_httpx() -> None:
    code = (
        "import sys, acprop_tuner.client\n"
        "heavy = {'service', 'optimizer', 'worker', 'jax', 'numpy', 'pydantic', 'fastapi',"
        " 'sqlalchemy', 'optuna'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_data_sets_upload_list_show_and_delete(tmp_path: Path, tuner: TunerClient) -> None:
    arrays = tabular()
    path = tmp_path / "train.npz"
    path.write_bytes(npz(**arrays))
    first = tuner.upload_dataset(path, name="train")
    assert isinstance(first, Dataset)
    assert (first.kind, first.rows, first.classes, first.families) == (
        "tabular",
        60,
        3,
        ("logreg", "mlp"),
    )
    assert first.arrays["x"] == {"dtype": "float32", "shape": [60, 4]}
    # The same arrays again (as bytes, compressed): the stored data set, not a second one.
    assert tuner.upload_dataset(npz(compressed=True, **arrays)) == first
    assert [d.sha256 for d in tuner.datasets()] == [first.sha256]
    assert tuner.dataset(first.sha256) == first
    job = tuner.submit("mlp", options={"dataset": first.sha256}, budget=SMALL)
    assert job.task_options["dataset"] == first.sha256
    with pytest.raises(Conflict, match="used by 1 queued or running job") as refused:
        tuner.delete_dataset(first.sha256)
    assert refused.value.detail["jobs"] == [job.id]
    tuner.cancel(job.id)
    tuner.delete_dataset(first.sha256)
    with pytest.raises(NotFound):
        tuner.dataset(first.sha256)
    with pytest.raises(InvalidRequest) as bad:
        tuner.upload_dataset(npz(x=arrays["x"], y=arrays["y"][:-1]))
    assert bad.value.fields == ["body.y"] and "mismatched lengths" in str(bad.value)
