"""Hostile input on every route (issue 14), on SQLite and Postgres: NUL characters, lone
surrogates, oversize strings and nesting 300 levels deep in every string field of every body,
writes that do not fit their lease, and another tenant's worker holding a valid token. Each
gets a 4xx, changes nothing (row counts, and every stored field of the job), and leaves every
other route of the tenant answering 200.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from service.db.models import Job
from service.settings import Settings
from tests.support.api import Api, db_state, result, running_app
from tests.support.databases import count_rows, make_settings


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        lease_ttl_s=120.0,
        allowed_task_modules="mytasks",
    )


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Any]:
    with running_app(settings) as application:
        yield application


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


BAD_TEXT = {
    "nul": "a\x00b",
    "lone surrogate": "a\ud800b",
    "oversize": "x" * 20_000,
    "300 deep": _deep(300),
}


def _set(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    if path[-1] == "KEY":  # the value as a key of the object
        target[value if isinstance(value, str) else json.dumps(value)] = 1
    else:
        target[path[-1]] = value
    return body


def _raw(body: Any) -> bytes:
    # json.dumps writes a lone surrogate as the escape \ud800, as a hostile client would.
    return json.dumps(body).encode()


def _routes(api: Api, job_id: str, token: str) -> list[tuple[str, str, Any, tuple[Any, ...]]]:
    """(route, key kind, a valid body, the path of a string field in it) for every string
    field of every body."""
    job = {"name": "n", "task": {"name": "mytasks:make", "options": {"k": "v"}}}
    report = {"reports": [{"token": token, "step": 5, "losses": [1.0, 1.0]}]}
    complete = {
        "results": [result(token, versions={"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8"})]
    }
    fail = {"failures": [{"token": token, "error": "ValueError: no"}]}
    return [
        ("/jobs", "user", job, ("name",)),
        ("/jobs", "user", job, ("task", "name")),
        ("/jobs", "user", job, ("task", "options", "k")),
        ("/jobs", "user", job, ("task", "options", "KEY")),
        ("/leases", "worker", {"worker_id": "w", "capacity": 1}, ("worker_id",)),
        ("/leases/heartbeat", "worker", {"tokens": [token]}, ("tokens", 0)),
        ("/leases/report", "worker", report, ("reports", 0, "token")),
        ("/leases/complete", "worker", complete, ("results", 0, "token")),
        ("/leases/complete", "worker", complete, ("results", 0, "versions", "optax")),
        ("/leases/fail", "worker", fail, ("failures", 0, "token")),
        ("/leases/fail", "worker", fail, ("failures", 0, "error")),
        ("/leases/release", "worker", {"tokens": [token]}, ("tokens", 0)),
    ]


def _post(api: Api, path: str, raw: bytes, kind: str) -> Any:
    key = api.user_key if kind == "user" else api.worker_key
    return api.client.post(
        f"/api/v1{path}",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def _all_routes_answer(api: Api, job_id: str) -> None:
    user = {"Authorization": f"Bearer {api.user_key}"}
    for path in ("/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/trials"):
        r = api.client.get(f"/api/v1{path}", headers=user)
        assert r.status_code == 200, (path, r.text)
    r = api.post("/leases", {"worker_id": "probe", "capacity": 1})
    assert r.status_code == 200, r.text
    if r.json()["leases"]:
        token = r.json()["leases"][0]["token"]
        assert api.post("/leases/release", {"tokens": [token]}).status_code == 200
    assert api.client.get("/dashboard").status_code == 200


def test_bad_text_in_every_string_field_is_a_4xx_and_changes_nothing(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4, steps=20, report_every=5)
    [lease] = api.lease(1)
    token = lease["token"]
    before, state = count_rows(app), db_state(app, job["id"])
    for route, kind, body, path in _routes(api, job["id"], token):
        for what, bad in BAD_TEXT.items():
            r = _post(api, route, _raw(_set(body, path, bad)), kind)
            assert 400 <= r.status_code < 500, (route, path, what, r.status_code, r.text)
            assert r.json()["error"] in ("validation_error", "payload_too_large"), r.text
    assert count_rows(app) == before
    assert db_state(app, job["id"]) == state
    # Query and path parameters too.
    user = {"Authorization": f"Bearer {api.user_key}"}
    for url in ("/api/v1/jobs?status=%00", f"/api/v1/jobs/{job['id']}/trials?after=%00"):
        assert api.client.get(url, headers=user).status_code == 422, url
    for url in ("/api/v1/jobs/%00", "/api/v1/jobs/%ED%A0%80"):
        assert api.client.get(url, headers=user).status_code == 404, url
    assert count_rows(app) == before
    _all_routes_answer(api, job["id"])


def test_a_stored_job_that_cannot_be_rendered_breaks_no_other_route(app: Any) -> None:
    """A job stored before the API bounded its input, with options nested 300 levels deep:
    the job list, the job, the dashboard and leasing still answer; the job fails, saying why,
    instead of being sent to workers."""
    api = Api(app)
    job = api.submit(n_trials=2)
    with app.state.session_factory() as session:
        row = session.get_one(Job, uuid.UUID(job["id"]))
        spec = row.spec.to_dict()
        spec["task"]["options"] = {"a": _deep(300)}
        session.execute(update(Job).where(Job.id == row.id).values(spec=spec))
        session.commit()
    _all_routes_answer(api, job["id"])
    shown = api.job(job["id"])
    assert shown["status"] == "failed"
    assert "cannot be sent" in shown["error"] and "nested more than" in shown["error"]
    assert shown["task"]["options"] == {}


def test_writes_that_do_not_fit_their_lease_are_refused_and_store_nothing(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=2, steps=50, report_every=10, seeds=2)
    first, second = api.lease(2)
    t = first["token"]
    state = db_state(app, job["id"])
    bad_reports = [
        ({"token": t, "step": 10, "losses": [1.0, 1.0, 1.0, 1.0, 1.0]}, "losses", "2 seeds"),
        ({"token": t, "step": 10**9, "losses": [1.0, 1.0]}, "step", "not a report step"),
        ({"token": t, "step": 15, "losses": [1.0, 1.0]}, "step", "every 10 steps"),
        ({"token": t, "step": 0, "losses": [1.0, 1.0]}, "step", "not a report step"),
    ]
    for report, field, words in bad_reports:
        # With a good report of the other lease in the same call: the whole call is refused.
        good = {"token": second["token"], "step": 10, "losses": [0.5, 0.5]}
        r = api.post("/leases/report", {"reports": [good, report]})
        assert r.status_code == 422, (report, r.text)
        [problem] = r.json()["detail"]
        assert problem["loc"] == ["body", "reports", 1, field] and words in problem["msg"]
    bad_results = [
        (result(t, final_losses=[0.1, 0.2, 0.3]), "final_losses"),
        (result(t, validation_losses=[0.1]), "validation_losses"),
        (result(t, diverged_at_step=[None, None, 3]), "diverged_at_step"),
        (result(t, diverged_at_step=[None, 51]), "diverged_at_step"),
    ]
    for item, field in bad_results:
        r = api.post("/leases/complete", {"results": [item]})
        assert r.status_code == 422, (item, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "results", 0, field]
    assert db_state(app, job["id"]) == state
    # The same lease still takes a write that fits.
    ok = api.post("/leases/report", {"reports": [{"token": t, "step": 50, "losses": [1.0, 2.0]}]})
    assert ok.status_code == 200, ok.text
    assert api.post("/leases/complete", {"results": [result(t)]}).status_code == 200


def test_another_tenants_worker_with_a_valid_token_changes_nothing(app: Any) -> None:
    owner, other = Api(app), Api(app)
    job = owner.submit(n_trials=2, steps=20, report_every=5)
    [lease] = owner.lease(1)
    t = lease["token"]
    state = db_state(app, job["id"])
    key = other.worker_key
    r = owner.post("/leases/heartbeat", {"tokens": [t]}, key=key)
    assert r.status_code == 200 and r.json()["held"] == [] and r.json()["lost"] == [t]
    writes = [
        ("/leases/report", {"reports": [{"token": t, "step": 5, "losses": [1.0, 1.0]}]}),
        ("/leases/complete", {"results": [result(t)]}),
        ("/leases/fail", {"failures": [{"token": t, "error": "RuntimeError: not mine"}]}),
        ("/leases/release", {"tokens": [t]}),
    ]
    for path, body in writes:
        r = owner.post(path, body, key=key)
        assert r.status_code == 409, (path, r.text)
        assert r.json()["detail"]["lost"] == [t]
    assert db_state(app, job["id"]) == state
    # The owner's worker still holds it.
    r = owner.post("/leases/heartbeat", {"tokens": [t]})
    assert r.json()["held"] == [t]
