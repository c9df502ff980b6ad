"""What every answer carries and how the API treats loose types and unknown methods (issue
14): security headers, no caching of tenant data, strict numbers and booleans in the job body,
complete `Allow` headers, and API docs that need no other origin."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api import docs
from tests.support.databases import KeyFactory, count_rows


def test_security_headers_and_no_store_on_tenant_data(
    client: TestClient, make_key: KeyFactory
) -> None:
    key = make_key()
    job = client.post("/api/v1/jobs", json={"task": {"name": "rosenbrock"}}, headers=key.headers)
    for r in (
        job,
        client.get("/api/v1/jobs", headers=key.headers),
        client.get(f"/api/v1/jobs/{job.json()['id']}/trials", headers=key.headers),
        client.get("/api/v1/jobs/not-a-job", headers=key.headers),  # errors too
        client.get("/api/v1/jobs"),  # 401
    ):
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert r.headers["cache-control"] == "no-store", r.request.url
    # Outside the API: the header, and each page's own caching.
    health = client.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"
    assert client.get("/dashboard").headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ({"budget": {"n_trials": "16"}}, "budget.n_trials"),
        ({"budget": {"n_trials": True}}, "budget.n_trials"),
        ({"budget": {"steps": 100.0}}, "budget.steps"),
        ({"warm_start": 0}, "warm_start"),
        ({"warm_start": "true"}, "warm_start"),
        ({"space": {"b1": {"value": "0.9"}}}, "space.b1"),
        ({"seed": "7"}, "seed"),
    ],
)
def test_no_coercion_into_numbers_or_booleans(
    client: TestClient, app: FastAPI, make_key: KeyFactory, part: dict, value: str
) -> None:
    key = make_key()
    before = count_rows(app)
    r = client.post(
        "/api/v1/jobs", json={"task": {"name": "rosenbrock"}, **part}, headers=key.headers
    )
    assert r.status_code == 422, r.text
    assert any(".".join(map(str, d["loc"])).startswith(f"body.{value}") for d in r.json()["detail"])
    assert count_rows(app) == before


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/api/v1/jobs", "GET, POST"),
        ("PUT", "/api/v1/jobs/00000000-0000-0000-0000-000000000000", "GET, DELETE"),
        ("GET", "/api/v1/leases", "POST"),
        ("DELETE", "/api/v1/jobs/x/cancel", "POST"),
    ],
)
def test_405_names_every_allowed_method(
    client: TestClient, make_key: KeyFactory, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path, headers=make_key().headers)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.json()["error"] == "method_not_allowed"


def test_docs_pages_link_only_local_assets(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        assert "http://" not in r.text and "https://" not in r.text, page
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert b"cdn.redoc.ly" not in client.get("/docs/static/redoc.standalone.js").content
    assert "validatorUrl" in client.get("/docs").text  # no badge from validator.swagger.io
    for name in docs.ASSETS:
        asset = client.get(f"/docs/static/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
    assert client.get("/docs/static/../settings.py").status_code == 404
    assert client.get("/docs/static/other.js").status_code == 404


def test_docs_without_their_assets_say_so(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs, "asset_dir", lambda: None)
    r = client.get("/docs")
    assert r.status_code == 503 and "/openapi.json" in r.text
    assert client.get("/openapi.json").status_code == 200
