"""The reads the dashboard draws from, through the real API on SQLite and Postgres: a job's
trials as columns, loss curves of chosen trials, parameter importance, and the workers serving
a tenant (with the worker-reported seconds they add up, bounded by the leases' age).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from service.db.models import KeyScope
from tests.support.api import run_trials
from tests.support.databases import Key, KeyFactory, count_rows

SPACE = {
    "learning_rate": {"low": 1e-5, "high": 1.0, "log": True},
    "b1": {"low": 0.8, "high": 0.99, "log": False},
    "eps_root": {"value": 1e-8},
}


def _job(client: TestClient, user: Key, n_trials: int, **body: Any) -> str:
    r = client.post(
        "/api/v1/jobs",
        json={
            "task": {"name": "rosenbrock"},
            "space": SPACE,
            "budget": {"n_trials": n_trials, "steps": 20, "seeds": 2, "report_every": 5},
            "sampler": "random",
            "seed": 1,
            **body,
        },
        headers=user.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _post(client: TestClient, worker: Key, path: str, body: dict[str, Any]) -> Any:
    r = client.post(f"/api/v1/leases{path}", json=body, headers=worker.headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_columns_and_curves(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    job = _job(client, user, 11)  # (under 12 trials: no confirmation stage to wait for)
    url = f"/api/v1/jobs/{job}"
    run_trials(client, worker.headers, 8)  # the warm-start sweep's first 8: validated losses
    # Two more in flight, one of them reported at steps 5 and 10; one fails.
    held: list[dict[str, Any]] = []
    while len(held) < 3:  # (the sweep's last trials come in a lease of their own)
        held += _post(client, worker, "", {"worker_id": "w", "capacity": 3 - len(held)})["leases"]
    for step in (5, 10):
        report = {"token": held[0]["token"], "step": step, "losses": [2.0 / step, None]}
        _post(client, worker, "/report", {"reports": [report]})
    _post(client, worker, "/fail", {"failures": [{"token": held[2]["token"], "error": "E: x"}]})

    cols = client.get(f"{url}/trials/columns", headers=user.headers).json()
    assert cols["number"] == list(range(11))
    by = {n: i for i, n in enumerate(cols["number"])}
    full = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    for t in full:  # the same trials as the full listing, column by column
        i = by[t["number"]]
        assert cols["state"][i] == t["state"]
        assert cols["value"][i] == t["value"]
        assert cols["diverged_at_step"][i] == t["diverged_at_step"]
        assert {k: v[i] for k, v in cols["params"].items()} == t["params"]
    finished = [i for i, s in enumerate(cols["state"]) if s == "complete"]
    assert finished and all(cols["on_validation"][i] for i in finished)
    first, failed = held[0]["trial"]["number"], held[2]["trial"]["number"]
    assert cols["last_step"][by[first]] == 10
    assert cols["last_step"][by[held[1]["trial"]["number"]]] is None  # running, no report
    assert cols["errors"] == {str(failed): "E: x"}
    assert cols["state"][by[failed]] == "failed"

    page = client.get(f"{url}/trials/columns?after=3&limit=4", headers=user.headers).json()
    assert page["number"] == [4, 5, 6, 7] and page["next_after"] == 7

    # Curves: the seeds' mean finite loss per reported step, in number order.
    r = client.get(f"{url}/curves?trial={first}&trial=0&trial=999", headers=user.headers)
    assert r.status_code == 200, r.text
    curves = r.json()["curves"]
    assert [c["number"] for c in curves] == sorted({0, first})
    running = next(c for c in curves if c["number"] == first)
    assert running["steps"] == [5, 10] and running["loss"] == [0.4, 0.2]
    assert running["state"] == "running"
    assert next(c for c in curves if c["number"] == 0)["steps"] == []  # completed unreported

    too_many = "&".join(f"trial={i}" for i in range(51))
    assert client.get(f"{url}/curves?{too_many}", headers=user.headers).status_code == 422

    # Another tenant's job is not found, for every read.
    other = make_key()
    for path in ("trials/columns", "curves?trial=0", "importance"):
        r = client.get(f"{url}/{path}", headers=other.headers)
        assert r.status_code == 404, (path, r.text)


def _current_importance(client: TestClient, user: Key, url: str, n: int) -> dict[str, Any]:
    """The importance once it is computed from `n` finished trials (it is computed off the
    request path: a request may answer that it is being computed)."""
    deadline = time.monotonic() + 30
    while True:
        answer: dict[str, Any] = client.get(url, headers=user.headers).json()
        if not answer["computing"] and answer["n_trials"] == n:
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


def test_importance(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    job = _job(client, user, 40)
    url = f"/api/v1/jobs/{job}/importance"
    none_yet = _current_importance(client, user, url, 0)
    assert none_yet["importances"] is None and "at least 10" in none_yet["reason"]
    run_trials(client, worker.headers, 40)
    answer = _current_importance(client, user, url, 40)
    assert answer["evaluator"] == "PED-ANOVA" and answer["n_finished"] == 40
    importances = answer["importances"]
    assert set(importances) == {"learning_rate", "b1"}
    assert abs(sum(importances.values()) - 1) < 1e-9
    # The synthetic loss depends on the learning rate alone (and it alone decides divergence).
    assert next(iter(importances)) == "learning_rate" and importances["learning_rate"] > 0.5

    # One tuned setting: nothing to compare.
    single = _job(client, user, 12, space={**SPACE, "b1": {"value": 0.9}})
    run_trials(client, worker.headers, 12)
    r = _current_importance(client, user, f"/api/v1/jobs/{single}/importance", 12)
    assert r["importances"] is None and "tunes one" in r["reason"]


def test_workers_serving_a_tenant(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    _job(client, user, 10)
    assert client.get("/api/v1/workers", headers=user.headers).json()["workers"] == []

    gpu0 = _post(client, worker, "", {"worker_id": "gpu-0", "capacity": 4})["leases"]
    gpu1 = _post(client, worker, "", {"worker_id": "gpu-1", "capacity": 2})["leases"]
    _post(client, worker, "/heartbeat", {"tokens": [le["token"] for le in gpu1]})
    time.sleep(0.3)  # so that the reported seconds fit within the leases' age
    results = [
        {
            "token": le["token"],
            "final_losses": [0.5, 0.5],
            "wall_s": wall,
            "compile_s": 0.2,
            "versions": {"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8"},
        }
        for le, wall in zip(gpu0[:3], [0.3, 0.25, 0.28], strict=True)
    ]
    _post(client, worker, "/complete", {"results": results})
    _post(client, worker, "/fail", {"failures": [{"token": gpu0[3]["token"], "error": "E"}]})

    listing = client.get("/api/v1/workers", headers=user.headers).json()
    assert listing["total"] == 2 and listing["lease_ttl_s"] > 0
    by_id = {w["worker_id"]: w for w in listing["workers"]}
    assert by_id["gpu-0"]["capacity"] == 4 and by_id["gpu-1"]["capacity"] == 2
    assert by_id["gpu-0"]["trials_held"] == 0 and by_id["gpu-1"]["trials_held"] == 2
    assert by_id["gpu-0"]["trials_finished"] == 3 and by_id["gpu-0"]["trials_failed"] == 1
    # One population: its compile time once, its longest wall time less that as training.
    assert abs(by_id["gpu-0"]["compile_s"] - 0.2) < 1e-9
    assert abs(by_id["gpu-0"]["train_s"] - 0.1) < 1e-9
    assert by_id["gpu-0"]["versions"]["optax"] == "0.2.8"
    assert by_id["gpu-1"]["trials_finished"] == 0 and by_id["gpu-1"]["versions"] is None
    assert by_id["gpu-0"]["last_seen_at"] >= by_id["gpu-0"]["first_seen_at"]

    # Other tenants see none of them.
    assert client.get("/api/v1/workers", headers=make_key().headers).json()["total"] == 0


def test_reported_seconds_cannot_exceed_the_lease(
    client: TestClient, make_key: KeyFactory, app: Any
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER)
    _job(client, user, 4)
    lease = _post(client, worker, "", {"worker_id": "liar", "capacity": 1})["leases"][0]
    before = count_rows(app)
    for field in ("wall_s", "compile_s"):
        body = {"token": lease["token"], "final_losses": [0.5, 0.5], field: 3600.0}
        r = client.post("/api/v1/leases/complete", json={"results": [body]}, headers=worker.headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "results", 0, field]
    assert count_rows(app) == before
    ok = {"token": lease["token"], "final_losses": [0.5, 0.5], "wall_s": 0.01, "compile_s": 0.0}
    _post(client, worker, "/complete", {"results": [ok]})
