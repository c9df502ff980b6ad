"""Authentication and tenancy: 401 without a valid key (a revoked key within 1 s), and 404
(never 403 or foreign data) for every route that names a job, with another tenant's key."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.db.models import KeyScope
from service.keys import revoke_key
from tests.support.databases import KeyFactory

BODY = {"name": "secret-project-name", "task": {"name": "rosenbrock"}}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) of the API from its OpenAPI description."""
    return [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _job_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(app) if "{job_id}" in p]


def _api_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p in _routes(app) if p.startswith("/api/")]


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    body = BODY if (method == "POST" and path == "/api/v1/jobs") else None
    return client.request(method, path, headers=headers, json=body)


def test_every_job_route_is_in_the_matrix(app: FastAPI) -> None:
    # If a route that names a job is added, it is covered by the matrix below.
    assert {p for _, p in _job_routes(app)} >= {
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/trials",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/recommendation",
    }
    assert ("DELETE", "/api/v1/jobs/{job_id}") in _job_routes(app)


def test_other_tenants_and_random_ids_are_not_found(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    owner = make_key()
    intruder = make_key()
    job = client.post("/api/v1/jobs", json=BODY, headers=owner.headers).json()
    ids = [job["id"], str(uuid.uuid4()), "not-a-uuid", "0"]
    for method, template in _job_routes(app):
        for job_id in ids:
            r = _call(client, method, template.replace("{job_id}", job_id), intruder.headers)
            assert r.status_code == 404, (method, template, job_id, r.text)
            body = r.json()
            assert set(body) == {"error", "detail"}
            text = json.dumps(body)
            assert "secret-project-name" not in text
            assert job["study_name"] not in text
            assert owner.tenant not in text

    # The intruder's listing does not show the job either, and the job is untouched.
    listing = client.get("/api/v1/jobs", headers=intruder.headers).json()
    assert listing["total"] == 0 and listing["jobs"] == []
    mine = client.get(f"/api/v1/jobs/{job['id']}", headers=owner.headers)
    assert mine.status_code == 200 and mine.json()["status"] == "queued"


def _bad_headers(make_key: KeyFactory) -> dict[str, dict[str, str]]:
    valid = make_key().secret
    return {
        "missing": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {valid}"},
        "no scheme": {"Authorization": valid},
        "garbage": {"Authorization": "Bearer !!!not a key!!!"},
        "unknown key": {"Authorization": f"Bearer acpt_{'x' * 43}"},
        "truncated key": {"Authorization": f"Bearer {valid[:-1]}"},
        "huge": {"Authorization": "Bearer " + "a" * 8000},
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty bearer",
        "basic scheme",
        "no scheme",
        "garbage",
        "unknown key",
        "truncated key",
        "huge",
    ],
)
def test_bad_keys_get_401_on_every_api_route(
    case: str, client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    headers = _bad_headers(make_key)[case]
    job_id = str(uuid.uuid4())
    for method, template in _api_routes(app):
        r = _call(client, method, template.replace("{job_id}", job_id), headers)
        assert r.status_code == 401, (case, method, template, r.text)
        assert r.json()["error"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_refused_within_a_second(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    key = make_key()
    assert client.get("/api/v1/jobs", headers=key.headers).status_code == 200
    with app.state.session_factory() as session:
        revoke_key(session, key.id)
    revoked_at = time.monotonic()
    status = 200
    while time.monotonic() - revoked_at < 1.0:
        status = client.get("/api/v1/jobs", headers=key.headers).status_code
        if status == 401:
            break
    assert status == 401


def test_worker_key_cannot_use_the_jobs_api(client: TestClient, make_key: KeyFactory) -> None:
    worker = make_key(scope=KeyScope.WORKER)
    r = client.post("/api/v1/jobs", json=BODY, headers=worker.headers)
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    assert client.get("/api/v1/jobs", headers=worker.headers).status_code == 403
