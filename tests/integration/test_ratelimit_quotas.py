"""Per-key rate limit and per-tenant quotas: 429 with Retry-After, while others are served."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from tests.support.databases import KeyFactory, count_rows, key_factory, make_settings

BURST = 20


@pytest.fixture(scope="module")
def limited_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        rate_limit_per_s=0.05,
        rate_limit_burst=BURST,
        quota_active_jobs=2,
        quota_trials_per_job=100,
        quota_steps_per_trial=1000,
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def limited(limited_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(limited_app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def keys(limited_app: FastAPI) -> KeyFactory:
    return key_factory(limited_app)


def test_burst_past_the_limit_gets_429_while_another_tenant_is_served(
    limited: TestClient, keys: KeyFactory
) -> None:
    noisy, quiet = keys(), keys()
    statuses = [
        limited.get("/api/v1/jobs", headers=noisy.headers).status_code for _ in range(BURST + 10)
    ]
    assert statuses.count(200) >= BURST
    assert 429 in statuses
    r = limited.get("/api/v1/jobs", headers=noisy.headers)
    assert r.status_code == 429
    assert r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1

    # Meanwhile another tenant is served.
    assert limited.get("/api/v1/jobs", headers=quiet.headers).status_code == 200


def test_quota_on_trials_and_steps(
    limited: TestClient, limited_app: FastAPI, keys: KeyFactory
) -> None:
    key = keys()
    before = count_rows(limited_app)
    for budget, field in (
        ({"n_trials": 101}, "budget.n_trials"),
        ({"steps": 1001}, "budget.steps"),
    ):
        r = limited.post(
            "/api/v1/jobs",
            json={"task": {"name": "rosenbrock"}, "budget": budget},
            headers=key.headers,
        )
        # Waiting can never make this job fit the limit: a 422 naming it, no Retry-After.
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "over_limit"
        [problem] = r.json()["detail"]
        assert ".".join(problem["loc"]) == f"body.{field}"
        assert problem["limit"] in (100, 1000) and "limit of" in problem["msg"]
        assert "retry-after" not in r.headers
    assert count_rows(limited_app)["acprop_jobs"] == before["acprop_jobs"]
    assert count_rows(limited_app)["studies"] == before["studies"]


def test_quota_on_active_jobs_per_tenant(limited: TestClient, keys: KeyFactory) -> None:
    key, other = keys(), keys()
    body = {"task": {"name": "rosenbrock"}, "budget": {"n_trials": 10, "steps": 100}}
    first = limited.post("/api/v1/jobs", json=body, headers=key.headers)
    second = limited.post("/api/v1/jobs", json=body, headers=key.headers)
    assert first.status_code == second.status_code == 201
    third = limited.post("/api/v1/jobs", json=body, headers=key.headers)
    assert third.status_code == 429
    assert third.json()["detail"]["quota"] == "active jobs"
    assert "retry-after" in third.headers
    # Another tenant has its own quota.
    assert limited.post("/api/v1/jobs", json=body, headers=other.headers).status_code == 201
    # Cancelling a job frees a slot.
    limited.post(f"/api/v1/jobs/{first.json()['id']}/cancel", headers=key.headers)
    assert limited.post("/api/v1/jobs", json=body, headers=key.headers).status_code == 201
