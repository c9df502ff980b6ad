"""The jobs API end to end, in process, on SQLite and Postgres: submit, read, list, trials,
cancel, delete, recommendation, idempotency, health and metrics."""

from __future__ import annotations

import uuid
from typing import Any

import optuna
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.db.models import Trial, TrialReport
from tests.support.databases import KeyFactory, count_rows

FULL_BODY: dict[str, Any] = {
    "name": "digits-lr",
    "task": {"name": "mlp-digits", "options": {"batch_size": 128}},
    "space": {
        "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
        "b1": {"value": 0.9},
        "b2": {"low": 0.9, "high": 0.9999},
        "eps": {"value": 1e-16},
        "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
        "weight_decay": {"value": 0.0},
    },
    "budget": {"n_trials": 64, "steps": 300, "seeds": 2, "report_every": 25, "max_attempts": 3},
    "sampler": "tpe",
    "pruner": "none",
    # These tests write trials themselves; the warm-start sweep is tested on its own.
    "warm_start": False,
}


def _study_names(app: FastAPI) -> list[str]:
    storage = optuna.storages.RDBStorage(app.state.settings.database_url_value())
    try:
        return [s.study_name for s in storage.get_all_studies()]
    finally:
        storage.engine.dispose()


def test_minimal_job_gets_acprop_defaults(client: TestClient, make_key: KeyFactory) -> None:
    key = make_key()
    r = client.post("/api/v1/jobs", json={"task": {"name": "mlp-digits"}}, headers=key.headers)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["name"] == "mlp-digits"
    assert job["space"] == {
        "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
        "b1": {"value": 0.9},
        "b2": {"value": 0.999},
        "eps": {"value": 1e-16},
        "eps_root": {"low": 1e-16, "high": 1e-6, "log": True},
        "weight_decay": {"value": 0.0},
    }
    assert job["budget"]["report_every"] <= job["budget"]["steps"]
    assert job["sampler"] == "tpe" and job["pruner"] == "none"
    assert job["task"]["options"]["batch_size"] == 128  # the task's defaults are filled in
    assert job["progress"]["n_trials"] == job["budget"]["n_trials"]
    assert job["progress"]["finished"] == 0
    assert job["best_value"] is None


def test_full_job_round_trips_and_owns_a_study(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    r = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers)
    assert r.status_code == 201, r.text
    job = r.json()
    for part in ("name", "sampler", "pruner", "budget"):
        assert job[part] == FULL_BODY[part]
    assert job["space"]["b2"] == {"low": 0.9, "high": 0.9999, "log": False}
    assert job["study_name"] == f"acprop-job-{job['id']}"
    assert job["study_name"] in _study_names(app)

    again = client.get(f"/api/v1/jobs/{job['id']}", headers=key.headers)
    assert again.status_code == 200
    assert again.json() == job


def test_idempotency_key_returns_the_first_job(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    headers = {**key.headers, "Idempotency-Key": "submit-1"}
    first = client.post("/api/v1/jobs", json=FULL_BODY, headers=headers)
    before = count_rows(app)
    second = client.post("/api/v1/jobs", json=FULL_BODY, headers=headers)
    assert first.status_code == 201 and second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert count_rows(app) == before

    other = client.post("/api/v1/jobs", json={**FULL_BODY, "name": "other"}, headers=headers)
    assert other.status_code == 409
    assert set(other.json()) == {"error", "detail"}
    assert count_rows(app) == before


def test_list_paginates_and_filters_by_status(client: TestClient, make_key: KeyFactory) -> None:
    key = make_key()
    ids = []
    for i in range(5):
        body = {"name": f"job-{i}", "task": {"name": "rosenbrock"}}
        ids.append(client.post("/api/v1/jobs", json=body, headers=key.headers).json()["id"])
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=key.headers)

    page1 = client.get("/api/v1/jobs?limit=2", headers=key.headers).json()
    page2 = client.get("/api/v1/jobs?limit=2&offset=2", headers=key.headers).json()
    page3 = client.get("/api/v1/jobs?limit=2&offset=4", headers=key.headers).json()
    seen = [j["id"] for p in (page1, page2, page3) for j in p["jobs"]]
    assert page1["total"] == 5
    assert sorted(seen) == sorted(ids)
    assert seen[0] == ids[-1]  # newest first

    queued = client.get("/api/v1/jobs?status=queued", headers=key.headers).json()
    cancelled = client.get("/api/v1/jobs?status=cancelled", headers=key.headers).json()
    assert queued["total"] == 4
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]

    bad = client.get("/api/v1/jobs?status=sleeping", headers=key.headers)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]


def _add_trials(app: FastAPI, job_id: str, n: int) -> None:
    """Trials as the broker (#4) writes them: numbered, with reports of their attempt."""
    states = ["complete", "running", "diverged", "pruned", "waiting", "failed"]
    with app.state.session_factory() as session:
        for number in range(n):
            state = states[number % len(states)]
            trial = Trial(
                job_id=uuid.UUID(job_id),
                number=number,
                params={"learning_rate": 10 ** -(number % 5 + 1), "eps_root": 1e-8},
                state=state,
                attempt=2 if number == 1 else 1,
                value=0.5 + number if state == "complete" else None,
                diverged_at_step=3 if state == "diverged" else None,
            )
            session.add(trial)
            session.flush()
            for step in (25, 50):
                session.add(
                    TrialReport(
                        trial_id=trial.id, attempt=trial.attempt, step=step, losses=[1.0, 2.0]
                    )
                )
            if number == 1:  # a report of an earlier attempt is not shown
                session.add(TrialReport(trial_id=trial.id, attempt=1, step=75, losses=[9.0, 9.0]))
        session.commit()


def test_trials_are_listed_incrementally_with_progress(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    job_id = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers).json()["id"]
    _add_trials(app, job_id, 12)

    numbers: list[int] = []
    after = -1
    pages = 0
    while after is not None:
        r = client.get(f"/api/v1/jobs/{job_id}/trials?after={after}&limit=5", headers=key.headers)
        assert r.status_code == 200
        page = r.json()
        numbers += [t["number"] for t in page["trials"]]
        after = page["next_after"]
        pages += 1
    assert numbers == list(range(12))
    assert pages == 3

    trials = client.get(f"/api/v1/jobs/{job_id}/trials?after=0&limit=1", headers=key.headers).json()
    (trial,) = trials["trials"]
    assert trial["number"] == 1 and trial["state"] == "running" and trial["attempt"] == 2
    assert trial["intermediate"] == [
        {"step": 25, "losses": [1.0, 2.0]},
        {"step": 50, "losses": [1.0, 2.0]},
    ]
    diverged = client.get(f"/api/v1/jobs/{job_id}/trials?after=1&limit=1", headers=key.headers)
    assert diverged.json()["trials"][0]["diverged_at_step"] == 3

    job = client.get(f"/api/v1/jobs/{job_id}", headers=key.headers).json()
    assert job["progress"] == {
        "n_trials": 64,
        "finished": 8,
        "waiting": 2,
        "running": 2,
        "complete": 2,
        "pruned": 2,
        "diverged": 2,
        "failed": 2,
    }
    assert job["best_value"] == 0.5


def test_cancel_then_conflicts(client: TestClient, make_key: KeyFactory) -> None:
    key = make_key()
    job_id = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers).json()["id"]
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=key.headers)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert r.json()["cancelled_at"] is not None
    # Cancelling again is a no-op.
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=key.headers).json() == r.json()


def test_cancel_a_finished_job_is_a_conflict(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    from service.db.models import Job, JobStatus
    from service.jobs import transition

    key = make_key()
    job_id = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers).json()["id"]
    with app.state.session_factory() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        transition(job, JobStatus.RUNNING)
        transition(job, JobStatus.FINISHED)
        session.commit()
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=key.headers)
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert "finished" in r.json()["detail"]


def test_delete_removes_job_trials_and_study(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    job = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers).json()
    _add_trials(app, job["id"], 3)
    before = count_rows(app)
    r = client.delete(f"/api/v1/jobs/{job['id']}", headers=key.headers)
    assert r.status_code == 204
    after = count_rows(app)
    assert after["acprop_jobs"] == before["acprop_jobs"] - 1
    assert after["acprop_trials"] == before["acprop_trials"] - 3
    assert after["acprop_trial_reports"] == before["acprop_trial_reports"] - 7
    assert job["study_name"] not in _study_names(app)
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=key.headers).status_code == 404
    assert client.delete(f"/api/v1/jobs/{job['id']}", headers=key.headers).status_code == 404


def test_recommendation_is_a_conflict_with_a_reason(
    client: TestClient, make_key: KeyFactory
) -> None:
    key = make_key()
    job_id = client.post("/api/v1/jobs", json=FULL_BODY, headers=key.headers).json()["id"]
    r = client.get(f"/api/v1/jobs/{job_id}/recommendation", headers=key.headers)
    assert r.status_code == 409
    assert r.json()["error"] == "conflict"
    assert "0 of 64 trials" in r.json()["detail"]


def test_health_ready_and_metrics(client: TestClient, make_key: KeyFactory) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    key = make_key()
    client.get("/api/v1/jobs", headers=key.headers)
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert (
        'acprop_tuner_http_requests_total{method="GET",route="/api/v1/jobs",status="200"}' in r.text
    )


def test_unknown_route_and_method_use_the_error_shape(
    client: TestClient, make_key: KeyFactory
) -> None:
    key = make_key()
    r = client.get("/api/v1/nothing", headers=key.headers)
    assert r.status_code == 404 and set(r.json()) == {"error", "detail"}
    r = client.put("/api/v1/jobs", headers=key.headers)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
