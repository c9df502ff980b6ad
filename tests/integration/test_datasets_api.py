"""Users' data sets over REST (issue 17), on SQLite and Postgres: a good upload, listed and
read back, stored once per tenant and content; every kind of bad file a 4xx naming the problem
with nothing stored; size limits enforced while the body streams and on the unpacked arrays;
another tenant's data set a 404 on read, on delete, when a job names it and when its worker
asks for it; a job's family checked against the data set; a data set in use not deletable; and
the copy a worker fetches is the canonical one, named by its own hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from optimizer.datasets import load_dataset
from service.db.models import KeyScope
from service.settings import Settings
from tests.support.databases import Key, KeyFactory, count_rows, make_settings
from tests.support.datasets import BAD_UPLOADS, images, npz, tabular, text

MAX_BYTES = 256 * 1024
MAX_UNPACKED = 512 * 1024
BUDGET = {"n_trials": 4, "steps": 20, "seeds": 1, "report_every": 10}


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        max_dataset_bytes=MAX_BYTES,
        max_dataset_unpacked_bytes=MAX_UNPACKED,
    )


@pytest.fixture
def user(make_key: KeyFactory) -> Key:
    return make_key()


def upload(client: TestClient, key: Key, body: Any, name: str | None = None) -> Any:
    params = {"name": name} if name is not None else None
    return client.post(
        "/api/v1/datasets",
        content=body,
        params=params,
        headers={**key.headers, "Content-Type": "application/octet-stream"},
    )


def submit(client: TestClient, key: Key, task: str, sha256: str, **options: Any) -> Any:
    body = {"task": {"name": task, "options": {"dataset": sha256, **options}}, "budget": BUDGET}
    return client.post("/api/v1/jobs", json=body, headers=key.headers)


def test_a_good_file_is_stored_once_listed_and_read_back(client: TestClient, user: Key) -> None:
    arrays = tabular()
    r = upload(client, user, npz(**arrays), name="my table")
    assert r.status_code == 201, r.text
    data = r.json()
    assert r.headers["Location"] == f"/api/v1/datasets/{data['sha256']}"
    assert data["name"] == "my table"
    assert data["kind"] == "tabular" and data["target"] == "classes" and data["classes"] == 3
    assert data["rows"] == 60 and data["validation_rows"] is None
    assert data["arrays"] == {
        "x": {"dtype": "float32", "shape": [60, 4]},
        "y": {"dtype": "int64", "shape": [60]},
    }
    assert data["families"] == ["logreg", "mlp"]
    before = count_rows(client.app)  # type: ignore[arg-type]
    # The same arrays, compressed, in another member order and byte order: the same content.
    same = npz(compressed=True, y=arrays["y"], x=arrays["x"].astype(">f4"))
    again = upload(client, user, same, name="another name")
    assert again.status_code == 200, again.text
    assert again.json()["sha256"] == data["sha256"] and again.json()["name"] == "my table"
    assert count_rows(client.app) == before  # type: ignore[arg-type]

    listed = client.get("/api/v1/datasets", headers=user.headers).json()
    assert listed["total"] == 1 and [d["sha256"] for d in listed["datasets"]] == [data["sha256"]]
    one = client.get(f"/api/v1/datasets/{data['sha256'].upper()}", headers=user.headers)
    assert one.status_code == 200 and one.json() == data

    img = upload(client, user, npz(**images(), x_val=images()["x"][:5], y_val=images()["y"][:5]))
    assert img.status_code == 201, img.text
    assert img.json()["kind"] == "images" and img.json()["validation_rows"] == 5
    assert img.json()["families"] == ["cnn", "logreg", "mlp"]
    lm = upload(client, user, npz(**text()))
    assert lm.status_code == 201 and lm.json()["families"] == ["char-lm"]
    assert client.get("/api/v1/datasets", headers=user.headers).json()["total"] == 3


def test_every_bad_file_is_a_4xx_naming_the_problem_and_nothing_is_stored(
    client: TestClient, user: Key
) -> None:
    before = count_rows(client.app)  # type: ignore[arg-type]
    for bad in BAD_UPLOADS:
        r = upload(client, user, bad.body)
        assert r.status_code == bad.status, (bad.name, r.text)
        [problem] = r.json()["detail"]
        assert problem["type"] == bad.type, (bad.name, problem)
        assert problem["msg"], bad.name
    assert count_rows(client.app) == before  # type: ignore[arg-type]
    assert client.get("/api/v1/datasets", headers=user.headers).json()["total"] == 0


def test_size_limits_hold_while_streaming_and_unpacked(client: TestClient, user: Key) -> None:
    before = count_rows(client.app)  # type: ignore[arg-type]
    noise = np.random.default_rng(0).normal(size=(MAX_BYTES // 32, 4))  # 2x the limit
    big = npz(x=noise, y=np.arange(len(noise)) % 2)
    declared = upload(client, user, big)
    assert declared.status_code == 413, declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 16 * 1024):
            yield big[i : i + 16 * 1024]

    streamed = upload(client, user, chunks())
    assert streamed.status_code == 413, streamed.text
    assert "larger than the limit" in streamed.json()["detail"]
    # A zip bomb: 4 MB of zeros deflate to a few KB, over the 512 KiB unpacked limit.
    bomb = npz(compressed=True, x=np.zeros((100_000, 10), np.float32), y=np.zeros(100_000, int))
    assert len(bomb) < 64 * 1024
    r = upload(client, user, bomb)
    assert r.status_code == 413 and "unpack" in r.json()["detail"], r.text
    assert count_rows(client.app) == before  # type: ignore[arg-type]
    # The other routes keep their own 64 KiB limit.
    r = client.post("/api/v1/jobs", content=b"{" + b" " * 70_000 + b"}", headers=user.headers)
    assert r.status_code == 413


def test_another_tenants_data_set_is_not_found_anywhere(
    client: TestClient, make_key: KeyFactory
) -> None:
    alice, bob = make_key(), make_key()
    body = npz(**tabular(seed=3))
    sha = upload(client, alice, body).json()["sha256"]
    bob_worker = make_key(tenant=bob.tenant, scope=KeyScope.WORKER)
    before = count_rows(client.app)  # type: ignore[arg-type]
    assert client.get(f"/api/v1/datasets/{sha}", headers=bob.headers).status_code == 404
    assert client.delete(f"/api/v1/datasets/{sha}", headers=bob.headers).status_code == 404
    r = submit(client, bob, "mlp", sha)
    assert r.status_code == 404 and sha in r.json()["detail"], r.text
    r = client.get(f"/api/v1/worker/datasets/{sha}", headers=bob_worker.headers)
    assert r.status_code == 404
    assert client.get("/api/v1/datasets", headers=bob.headers).json()["total"] == 0
    assert count_rows(client.app) == before  # type: ignore[arg-type]
    # The same bytes uploaded by bob are bob's own record: deleting it leaves alice's.
    assert upload(client, bob, body).status_code == 201
    assert client.delete(f"/api/v1/datasets/{sha}", headers=bob.headers).status_code == 204
    assert client.get(f"/api/v1/datasets/{sha}", headers=alice.headers).status_code == 200


def test_a_job_names_a_data_set_its_family_trains_on(client: TestClient, user: Key) -> None:
    table = upload(client, user, npz(**tabular(seed=4))).json()["sha256"]
    r = submit(client, user, "mlp", table, widths=[8])
    assert r.status_code == 201, r.text
    assert r.json()["task"] == {
        "name": "mlp",
        "options": {"dataset": table, "widths": [8], "activation": "relu", "batch_size": 64},
    }
    lm = upload(client, user, npz(**text(repeat=3))).json()["sha256"]
    before = count_rows(client.app)  # type: ignore[arg-type]
    r = submit(client, user, "cnn", table)
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == ["body", "task", "options", "dataset"]
    assert "needs images data, and this data set holds tabular" in problem["msg"]
    r = submit(client, user, "char-lm", lm, seq_len=128)
    assert r.status_code == 422 and "seq_len 128" in r.text, r.text
    r = client.post("/api/v1/jobs", json={"task": {"name": "logreg"}}, headers=user.headers)
    assert r.status_code == 422 and "needs option 'dataset'" in r.text
    r = submit(client, user, "mlp", "not-a-hash")
    assert r.status_code == 422 and "sha256" in r.text
    r = submit(client, user, "mlp", "0" * 64)
    assert r.status_code == 404, r.text
    assert count_rows(client.app) == before  # type: ignore[arg-type]


def test_a_data_set_in_use_cannot_be_deleted(client: TestClient, user: Key) -> None:
    sha = upload(client, user, npz(**tabular(seed=5))).json()["sha256"]
    job = submit(client, user, "logreg", sha).json()
    r = client.delete(f"/api/v1/datasets/{sha}", headers=user.headers)
    assert r.status_code == 409, r.text
    assert r.json()["detail"]["jobs"] == [job["id"]]
    assert client.get(f"/api/v1/datasets/{sha}", headers=user.headers).status_code == 200
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user.headers).status_code == 200
    assert client.delete(f"/api/v1/datasets/{sha}", headers=user.headers).status_code == 204
    assert client.get(f"/api/v1/datasets/{sha}", headers=user.headers).status_code == 404
    # The cancelled job is still readable; a new job on the deleted data set is not accepted.
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=user.headers).status_code == 200
    assert submit(client, user, "logreg", sha).status_code == 404


def test_a_worker_fetches_the_canonical_copy_named_by_its_hash(
    client: TestClient, user: Key, make_key: KeyFactory
) -> None:
    arrays = tabular(seed=6)
    sha = upload(client, user, npz(compressed=True, **arrays)).json()["sha256"]
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    r = client.get(f"/api/v1/worker/datasets/{sha}", headers=worker.headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(r.content).hexdigest() == sha
    copy = load_dataset(r.content, sha)
    np.testing.assert_array_equal(copy.arrays["x"], arrays["x"])
    np.testing.assert_array_equal(copy.arrays["y"], arrays["y"])
    # A user key may not use the worker route, nor a worker key the user's.
    assert client.get(f"/api/v1/worker/datasets/{sha}", headers=user.headers).status_code == 403
    assert client.get("/api/v1/datasets", headers=worker.headers).status_code == 403
    for bad in ("0" * 64, "xyz", sha[:-1]):
        r = client.get(f"/api/v1/worker/datasets/{bad}", headers=worker.headers)
        assert r.status_code == 404, bad


def test_uploads_need_a_user_key(client: TestClient, make_key: KeyFactory, app: FastAPI) -> None:
    worker = make_key(scope=KeyScope.WORKER)
    before = count_rows(app)
    body = npz(**tabular(seed=7))
    assert client.post("/api/v1/datasets", content=body).status_code == 401
    assert upload(client, worker, body).status_code == 403
    assert count_rows(app) == before
