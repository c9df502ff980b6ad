"""The worker protocol against the real API, on Postgres and SQLite (issue #4, service side).

A "worker" here does no training: it only makes the protocol's HTTP calls. Each test works in
its own tenant, so tests share one migrated database per module without seeing each other.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.broker.study_sink import TRIAL_ID_ATTR
from service.db.models import KeyScope, Lease, Trial, TrialReport
from service.keys import create_key
from service.settings import Settings
from tests.integration.broker_support import job_body
from tests.integration.conftest import make_settings

TTL_S = 1.5
REAPER_S = 0.2


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Short leases and a fast reaper, so expiry tests take seconds."""
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        lease_ttl_s=TTL_S,
        reaper_period_s=REAPER_S,
    )


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Any]:
    """The app with its lifespan running (the broker's reaper thread), on both backends."""
    application = create_app(settings)
    with TestClient(application, raise_server_exceptions=False) as client:
        application.state.test_client = client
        yield application


class Api:
    """One tenant's user and worker keys on the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client: TestClient = app.state.test_client
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        with app.state.session_factory() as session:
            _, self.user_key = create_key(session, tenant=tenant, scope=KeyScope.USER)
            _, self.worker_key = create_key(session, tenant=tenant, scope=KeyScope.WORKER)

    def post(self, path: str, body: Any, *, key: str | None = None) -> Any:
        # Raw JSON so that NaN and Infinity literals reach the server as a worker might send.
        return self.client.post(
            f"/api/v1{path}",
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {key or self.worker_key}",
                "Content-Type": "application/json",
            },
        )

    def submit(self, **budget: Any) -> dict[str, Any]:
        r = self.post("/jobs", job_body(**budget), key=self.user_key)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {self.user_key}"}
        )
        assert r.status_code == 200, r.text
        return r.json()

    def lease(self, capacity: int) -> list[dict[str, Any]]:
        r = self.post("/leases", {"worker_id": "test-worker", "capacity": capacity})
        assert r.status_code == 200, r.text
        return r.json()["leases"]


def result(token: str, value: float = 0.5, **kw: Any) -> dict[str, Any]:
    return {
        "token": token,
        "final_losses": [value, value],
        "validation_losses": [value, value],
        "last_finite_losses": [value, value],
        "diverged_at_step": [None, None],
        "pruned": False,
        "wall_s": 0.1,
        "compile_s": 0.0,
        **kw,
    }


def db_state(app: Any, job_id: str) -> dict[str, Any]:
    """Everything the broker stores of one job (ours and Optuna's), comparable with ==."""
    with app.state.session_factory() as s:
        trials = s.scalars(select(Trial).where(Trial.job_id == uuid.UUID(job_id))).all()
        ids = [t.id for t in trials]
        reports = s.execute(
            select(TrialReport.trial_id, TrialReport.attempt, TrialReport.step, TrialReport.losses)
            .where(TrialReport.trial_id.in_(ids))
            .order_by(TrialReport.trial_id, TrialReport.step)
        ).all()
        leases = s.execute(
            select(Lease.trial_id, Lease.attempt, Lease.end_reason, Lease.expires_at)
            .where(Lease.trial_id.in_(ids))
            .order_by(Lease.trial_id, Lease.attempt)
        ).all()
        study_name = f"acprop-job-{job_id}"
    storage = app.state.studies.storage()
    frozen = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    return {
        "trials": sorted(
            (t.id, t.number, t.state, t.attempt, t.value, t.diverged_at_step, t.optuna_trial_id)
            for t in trials
        ),
        "reports": [tuple(r) for r in reports],
        "leases": [tuple(le) for le in leases],
        "optuna": sorted(
            (f.user_attrs.get(TRIAL_ID_ATTR), f.state.name, f.value, f.intermediate_values)
            for f in frozen
        ),
    }


# -- the round trip ------------------------------------------------------------------------


def test_lease_report_complete_finishes_the_job_and_its_study(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=5, steps=20, report_every=10)
    leases = api.lease(8)
    assert len(leases) == 5  # never more than the budget
    assert sorted(le["trial"]["number"] for le in leases) == [0, 1, 2, 3, 4]
    assert {le["trial"]["job_id"] for le in leases} == {job["id"]}
    assert api.job(job["id"])["status"] == "running"
    assert api.lease(8) == []  # all trials are out

    tokens = [le["token"] for le in leases]
    for step in (10, 20):
        r = api.post(
            "/leases/report",
            {
                "reports": [
                    {"token": t, "step": step, "losses": [1.0 / step, 2.0 / step]} for t in tokens
                ]
            },
        )
        assert r.status_code == 200 and r.json() == {"stop": []}
    r = api.post(
        "/leases/complete", {"results": [result(t, 0.1 * i) for i, t in enumerate(tokens)]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == tokens

    assert api.job(job["id"])["status"] == "finished"
    state = db_state(app, job["id"])
    assert [t[2] for t in state["trials"]] == ["complete"] * 5
    assert all(t[6] is not None for t in state["trials"])  # optuna_trial_id recorded
    assert [le[2] for le in state["leases"]] == ["completed"] * 5
    assert len(state["optuna"]) == 5  # exactly one Optuna trial per finished trial
    assert {o[0] for o in state["optuna"]} == {t[0] for t in state["trials"]}
    for _, ostate, value, intermediate in state["optuna"]:
        assert ostate == "COMPLETE" and value is not None
        assert intermediate == pytest.approx({10: 0.15, 20: 0.075})


def test_only_worker_keys_may_use_the_protocol(app: Any) -> None:
    api = Api(app)
    r = api.post("/leases", {"worker_id": "w", "capacity": 1}, key=api.user_key)
    assert r.status_code == 403
    r = api.post("/leases", {"worker_id": "w", "capacity": 1}, key="acpt_not-a-key")
    assert r.status_code == 401


def test_no_work_answers_empty_with_a_retry_hint(app: Any) -> None:
    api = Api(app)
    r = api.post("/leases", {"worker_id": "w", "capacity": 4})
    assert r.status_code == 200
    assert r.json()["leases"] == [] and r.json()["retry_after_s"] > 0


# -- fencing -------------------------------------------------------------------------------


def test_stale_tokens_get_409_and_change_nothing(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4, steps=20, report_every=10)
    leases = api.lease(4)
    good, released, other = (le["token"] for le in leases[:3])
    assert api.post("/leases/release", {"tokens": [released]}).status_code == 200
    unknown = "lt_" + "x" * 43
    before = db_state(app, job["id"])

    for stale in (released, unknown):
        r = api.post(
            "/leases/report",
            {
                "reports": [
                    {"token": good, "step": 10, "losses": [1.0, 1.0]},
                    {"token": stale, "step": 10, "losses": [1.0, 1.0]},
                ]
            },
        )
        assert r.status_code == 409, r.text
        assert r.json()["detail"]["lost"] == [stale]
        r = api.post("/leases/complete", {"results": [result(good), result(stale)]})
        assert r.status_code == 409
        assert r.json()["detail"]["lost"] == [stale]
        if stale == unknown:  # (releasing a released lease again is a repeat, not stale)
            r = api.post("/leases/release", {"tokens": [other, stale]})
            assert r.status_code == 409
    assert db_state(app, job["id"]) == before

    # The heartbeat never answers 409: it says what is held and what is lost.
    r = api.post("/leases/heartbeat", {"tokens": [good, released, unknown]})
    assert r.status_code == 200
    assert r.json()["held"] == [good] and set(r.json()["lost"]) == {released, unknown}


def test_expired_lease_is_fenced_even_before_the_reaper_runs(app: Any) -> None:
    api = Api(app)
    api.submit(n_trials=1)
    (lease,) = api.lease(1)
    time.sleep(TTL_S + 0.05)
    r = api.post("/leases/complete", {"results": [result(lease["token"])]})
    assert r.status_code == 409


# -- idempotency and reordering ------------------------------------------------------------


def _payloads(tokens: list[str], steps: int, every: int) -> tuple[list[dict], list[dict]]:
    reports = [
        {"reports": [{"token": t, "step": s, "losses": [i + 1.0 / s, i + 2.0 / s]}]}
        for i, t in enumerate(tokens)
        for s in range(every, steps + 1, every)
    ]
    # Batches of several trials, as a worker sends them, too.
    reports += [
        {
            "reports": [
                {"token": t, "step": every, "losses": [i + 1.0 / every, i + 2.0 / every]}
                for i, t in enumerate(tokens)
            ]
        }
    ]
    completes = [{"results": [result(t, 0.25 * i)]} for i, t in enumerate(tokens)]
    completes.append({"results": [result(t, 0.25 * i) for i, t in enumerate(tokens)]})
    return reports, completes


def _expected(state: dict[str, Any], n: int, steps: int, every: int) -> None:
    """The state a single in-order delivery of the payloads leaves."""
    assert [t[2] for t in state["trials"]] == ["complete"] * n
    values = sorted(t[4] for t in state["trials"])
    assert values == pytest.approx(sorted(0.25 * i for i in range(n)))
    assert len(state["reports"]) == n * (steps // every)
    assert [le[2] for le in state["leases"]] == ["completed"] * n
    assert len(state["optuna"]) == n
    for _, ostate, _, intermediate in state["optuna"]:
        assert ostate == "COMPLETE" and sorted(intermediate) == list(range(every, steps + 1, every))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeated_and_reordered_calls_leave_the_same_state(app: Any, seed: int) -> None:
    rng = random.Random(seed)
    api = Api(app)
    n, steps, every = 6, 40, 10
    job = api.submit(n_trials=n, steps=steps, report_every=every)
    tokens = [le["token"] for le in api.lease(n)]
    reports, completes = _payloads(tokens, steps, every)
    # Each call is sent 1-3 times (a retried HTTP call), in shuffled order; reports go before
    # the completions, as a worker sends them, and late duplicates of delivered reports
    # arrive after.
    sent_reports = [p for p in reports for _ in range(rng.randint(1, 3))]
    rng.shuffle(sent_reports)
    sent_completes = [p for p in completes for _ in range(rng.randint(1, 3))]
    rng.shuffle(sent_completes)
    late = rng.sample(reports, 4)
    answers: dict[str, set[str]] = {}
    for body in sent_reports + sent_completes + late:
        path = "/leases/complete" if "results" in body else "/leases/report"
        r = api.post(path, body)
        assert r.status_code == 200, r.text
        answers.setdefault(json.dumps(body, sort_keys=True), set()).add(r.text)
    # A repeated call got the same answer every time.
    assert all(len(a) == 1 for a in answers.values())
    state = db_state(app, job["id"])
    _expected(state, n, steps, every)
    assert api.job(job["id"])["status"] == "finished"


# -- non-finite losses ---------------------------------------------------------------------


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def test_non_finite_losses_are_never_stored_as_complete_values(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=8, steps=20, report_every=10)
    tokens = [le["token"] for le in api.lease(8)]
    reports = [
        {"token": t, "step": 10, "losses": [NON_FINITE[i % 3], 1.0]} for i, t in enumerate(tokens)
    ]
    r = api.post("/leases/report", {"reports": reports})  # json.dumps writes NaN/Infinity
    assert r.status_code == 200, r.text
    results = []
    for i, t in enumerate(tokens):
        bad = NON_FINITE[i % 3]
        if i < 3:  # flagged by the worker, as the engine does
            results.append(
                result(
                    t,
                    final_losses=[bad, 1.0],
                    diverged_at_step=[7, None],
                    last_finite_losses=[3.0, 1.0],
                )
            )
        elif i < 6:  # not flagged: the server judges it anyway
            results.append(result(t, final_losses=[1.0, bad], validation_losses=[bad, bad]))
        elif i == 6:  # null (the worker's own encoding of a non-finite loss)
            results.append(result(t, final_losses=[None, 0.5], validation_losses=[None, 0.5]))
        else:  # finite results but a non-finite validation loss: value from the final losses
            results.append(result(t, final_losses=[0.5, 0.7], validation_losses=[bad, 0.1]))
    r = api.post("/leases/complete", {"results": results})
    assert r.status_code == 200, r.text

    state = db_state(app, job["id"])
    states = [t[2] for t in sorted(state["trials"], key=lambda t: t[1])]
    assert states == ["diverged"] * 7 + ["complete"]
    assert [t[5] for t in sorted(state["trials"], key=lambda t: t[1])][:3] == [7, 7, 7]
    for t in state["trials"]:
        assert t[4] is None or math.isfinite(t[4])
    for r_ in state["reports"]:
        assert all(v is None or math.isfinite(v) for v in r_[3])
    for _, ostate, value, intermediate in state["optuna"]:
        assert ostate in ("COMPLETE", "FAIL")
        assert value is None or math.isfinite(value)
        assert ostate != "COMPLETE" or value == pytest.approx(0.6)
        assert all(math.isfinite(v) for v in intermediate.values())
    # Nothing answers 5xx afterwards.
    headers = {"Authorization": f"Bearer {api.user_key}"}
    for path in (f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/trials", "/api/v1/jobs"):
        assert api.client.get(path, headers=headers).status_code < 500
    assert api.post("/leases", {"worker_id": "w", "capacity": 2}).status_code == 200
    assert api.post("/leases/heartbeat", {"tokens": tokens}).status_code == 200


# -- release and cancel --------------------------------------------------------------------


def test_release_returns_trials_with_the_same_params_and_costs_no_attempt(app: Any) -> None:
    api = Api(app)
    api.submit(n_trials=2, max_attempts=2)
    first = {le["trial"]["trial_id"]: le for le in api.lease(2)}
    for round_ in range(3):  # more releases than max_attempts: none of them counts
        tokens = [le["token"] for le in first.values()]
        for _ in range(2):  # a repeated release answers the same
            r = api.post("/leases/release", {"tokens": tokens})
            assert r.status_code == 200 and r.json()["released"] == tokens
        again = {le["trial"]["trial_id"]: le for le in api.lease(2)}
        assert set(again) == set(first)
        for tid, le in again.items():
            assert le["trial"]["config"] == first[tid]["trial"]["config"]
            assert le["trial"]["number"] == first[tid]["trial"]["number"]
            assert le["trial"]["attempt"] == round_ + 2
        first = again


def test_cancel_ends_leases_at_the_next_heartbeat_or_report(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4)
    a, b, c = (le["token"] for le in api.lease(3))
    r = api.client.post(
        f"/api/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {api.user_key}"}
    )
    assert r.status_code == 200, r.text
    r = api.post("/leases/heartbeat", {"tokens": [a]})
    assert r.json()["held"] == [] and r.json()["lost"] == [a]
    for _ in range(2):  # and a repeated report answers the same
        r = api.post("/leases/report", {"reports": [{"token": b, "step": 5, "losses": [1.0]}]})
        assert r.status_code == 200 and r.json()["stop"] == [b]
    assert api.post("/leases/complete", {"results": [result(c)]}).status_code == 409
    assert api.lease(4) == []  # a cancelled job hands out nothing
    state = db_state(app, job["id"])
    assert [le[2] for le in state["leases"]] == ["cancelled"] * 3
    assert api.job(job["id"])["status"] == "cancelled"


# -- the reaper ----------------------------------------------------------------------------


def test_reaper_retries_with_identical_params_then_fails(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=1, max_attempts=3)
    seen = []
    for attempt in (1, 2, 3):
        (lease,) = _lease_within(api, 1, timeout=TTL_S + 5)
        assert lease["trial"]["attempt"] == attempt
        seen.append(lease["trial"]["config"])
        # The worker dies: no heartbeat, no result.
    assert seen[0] == seen[1] == seen[2]
    deadline = time.monotonic() + TTL_S + 5
    while api.job(job["id"])["status"] != "finished":
        assert time.monotonic() < deadline, "the reaper did not fail the trial in time"
        time.sleep(0.05)
    state = db_state(app, job["id"])
    assert [t[2] for t in state["trials"]] == ["failed"]
    assert [le[2] for le in state["leases"]] == ["expired"] * 3
    assert [o[1] for o in state["optuna"]] == ["FAIL"]
    assert api.lease(1) == []


def test_heartbeat_keeps_a_lease_past_its_ttl(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=1)
    (lease,) = api.lease(1)
    for _ in range(4):
        time.sleep(TTL_S / 3)
        r = api.post("/leases/heartbeat", {"tokens": [lease["token"]]})
        assert r.json()["held"] == [lease["token"]]
    r = api.post("/leases/complete", {"results": [result(lease["token"])]})
    assert r.status_code == 200
    assert api.job(job["id"])["status"] == "finished"


def _lease_within(api: Api, capacity: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        leases = api.lease(capacity)
        if leases:
            return leases
        assert time.monotonic() < deadline, "no lease came back in time"
        time.sleep(0.05)
