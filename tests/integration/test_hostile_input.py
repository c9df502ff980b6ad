"""Hostile input on every route (issue 14), on SQLite and Postgres: NUL characters, lone
surrogates, oversize strings and nesting 300 levels deep in every string field of every body,
writes that do not fit their lease, and another tenant's worker holding a valid token. Each
gets a 4xx, changes nothing (row counts, and every stored field of the job), and leaves every
other route of the tenant answering 200.
"""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from service.db.models import Job
from service.settings import Settings
from tests.support.api import Api, db_state, result, running_app
from tests.support.databases import count_rows, make_settings
from tests.support.datasets import BAD_UPLOADS, npz, raw_npy_zip, tabular


@pytest.fixture(scope="module", name="settings")
def settings_fixture(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
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


def _zip64(body: bytes) -> bytes:
    """``body`` (a zip) with a zip64 end record and locator before its end record."""
    eocd = body.rfind(b"PK\x05\x06")
    record = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 10**6, 10**6, 10**9, 0)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, eocd, 1)
    return body[:eocd] + record + locator + body[eocd:]


def _crafted(valid: bytes) -> dict[str, bytes]:
    """Archives that numpy never writes, each aimed at one part of the reader."""
    y = np.arange(60) % 3
    members = {f"{n}.npy": valid for n in ("x", "y", "x_val", "y_val", "extra")}
    return {
        "five members": raw_npy_zip(members),
        "a zip64 end record": _zip64(valid),
        "a header that is Python code": raw_npy_zip(
            {"x.npy": b"\x93NUMPY\x01\x00\x20\x00{'descr': __import__('os'), }    \n"}
        ),
        "a header over 10 kB": raw_npy_zip(
            {"x.npy": b"\x93NUMPY\x02\x00\x00\x00\x01\x00" + b" " * 65_536 + b"\n"}
        ),
        "bzip2 members": _rezipped(valid, zipfile.ZIP_BZIP2),
        "random bytes": np.random.default_rng(1).bytes(5_000),
        "a zip inside a zip": raw_npy_zip({"x.npy": valid, "y.npy": npz(y=y)}),
        "a deflated member whose size lies": _lying_size(),
    }


def _rezipped(valid: bytes, compression: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid)) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return out.getvalue()


def _lying_size() -> bytes:
    """A 4 MB member of zeros whose directory says it is 128 bytes long: zipfile inflates no
    more than the directory says, so the reader sees 128 bytes that fail their CRC."""
    big = io.BytesIO()
    np.save(big, np.zeros(500_000))
    body = raw_npy_zip({"x.npy": big.getvalue()})
    body = _compressed(body)
    size = struct.pack("<I", len(big.getvalue()))
    return body.replace(size, struct.pack("<I", 128))


def _compressed(body: bytes) -> bytes:
    return _rezipped(body, zipfile.ZIP_DEFLATED)


@given(data=st.data())
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def _fuzz(data: st.DataObject, send: Any, valid: bytes, sha256: str) -> None:
    body = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(body) - 1))
        if kind == "flip":
            body[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del body[at : at + data.draw(st.integers(1, 64))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=32))
    r = send(bytes(body))
    assert r.status_code < 500, r.text
    if r.status_code < 300:  # a field zipfile ignores: the same arrays, the record kept
        assert r.status_code == 200 and r.json()["sha256"] == sha256
    else:
        assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "detail"}


def test_hostile_uploads_and_data_set_routes_get_a_4xx_and_change_nothing(app: Any) -> None:
    """Every bad file of tests/support/datasets.py, archives aimed at the reader (zip64,
    bzip2, a lying size, a header of Python code, nested zips), 60 random mutations of a good
    file, stored and deflated, and hostile names and path parameters: never a 5xx, nothing
    stored, and the tenant's routes still answer."""
    api = Api(app)
    user = {"Authorization": f"Bearer {api.user_key}"}
    worker = {"Authorization": f"Bearer {api.worker_key}"}

    def send(body: bytes) -> Any:
        return api.client.post("/api/v1/datasets", content=body, headers=user)

    valid = npz(**tabular())
    created = send(valid)
    assert created.status_code == 201, created.text
    sha = created.json()["sha256"]
    before = count_rows(app)
    for bad in BAD_UPLOADS:
        assert send(bad.body).status_code == bad.status, bad.name
    for what, body in _crafted(valid).items():
        r = send(body)
        assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
        assert r.json()["error"] in ("validation_error", "payload_too_large"), (what, r.text)
    _fuzz(send=send, valid=valid, sha256=sha)
    _fuzz(send=send, valid=_compressed(valid), sha256=sha)
    for name in ("%00", "a%00b", "line%0Abreak", "x" * 300, ""):
        r = api.client.post(f"/api/v1/datasets?name={name}", content=valid, headers=user)
        assert r.status_code == 422, (name, r.text)
    # Undecodable UTF-8 arrives as U+FFFD, a printable name: the stored record is returned.
    r = api.client.post("/api/v1/datasets?name=%ED%A0%80", content=valid, headers=user)
    assert r.status_code == 200 and r.json()["name"] is None, r.text
    for path in ("%00", "%ED%A0%80", "x" * 5_000, sha + "0", "..%2F..%2Fjobs"):
        assert api.client.get(f"/api/v1/datasets/{path}", headers=user).status_code == 404, path
        assert api.client.delete(f"/api/v1/datasets/{path}", headers=user).status_code == 404
        r = api.client.get(f"/api/v1/worker/datasets/{path}", headers=worker)
        assert r.status_code == 404, path
    for query in ("limit=0", "limit=%00", "offset=-1", "limit=100000"):
        assert api.client.get(f"/api/v1/datasets?{query}", headers=user).status_code == 422
    assert count_rows(app) == before
    assert api.client.get(f"/api/v1/datasets/{sha}", headers=user).status_code == 200
    assert api.client.get("/dashboard").status_code == 200
