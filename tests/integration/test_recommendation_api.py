"""The warm-start sweep and the recommendation endpoint through the real API (issue #5).

A "worker" here does no training: it leases trials over the protocol and answers with the
losses of a synthetic problem whose optimum and divergence edge are known, so the test can
check where the recommendation lands. Runs on SQLite and Postgres.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from optimizer.space import SearchSpace
from optimizer.warm_start import warm_start_configs
from service.db.models import KeyScope
from tests.integration.conftest import KeyFactory

BEST_LR = 3e-3  # the loss minimum of the synthetic problem


def edge(eps_root: float) -> float:
    """The divergence edge: far lower with optax's eps_root=1e-16, as ACProp behaves."""
    return 3e-2 if eps_root >= 1e-10 else 2e-3


def synthetic_losses(config: dict[str, float], seeds: list[int]) -> tuple[list[float], bool]:
    lr = config["learning_rate"]
    diverged = lr > edge(config["eps_root"])
    losses = [0.1 + (math.log10(lr) - math.log10(BEST_LR)) ** 2 + 0.001 * s for s in seeds]
    return losses, diverged


def run_trials(client: TestClient, worker: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Lease, report and complete up to `limit` trials; returns the leased trials."""
    done: list[dict[str, Any]] = []
    while len(done) < limit:
        r = client.post(
            "/api/v1/leases",
            json={"worker_id": "synthetic", "capacity": min(8, limit - len(done))},
            headers=worker,
        )
        assert r.status_code == 200, r.text
        leases = r.json()["leases"]
        if not leases:
            break
        results = []
        for lease in leases:
            trial = lease["trial"]
            losses, diverged = synthetic_losses(trial["config"], trial["seeds"])
            results.append(
                {
                    "token": lease["token"],
                    "final_losses": losses,
                    "validation_losses": losses,
                    "last_finite_losses": losses,
                    "diverged_at_step": [3 if diverged else None for _ in losses],
                    "pruned": False,
                    "wall_s": 0.1,
                    "compile_s": 0.0,
                }
            )
            done.append(trial)
        r = client.post("/api/v1/leases/complete", json={"results": results}, headers=worker)
        assert r.status_code == 200, r.text
    return done


def test_warm_start_sweep_then_recommendation(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    body = {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": 40, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "random",
    }
    r = client.post("/api/v1/jobs", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    url = f"/api/v1/jobs/{job_id}"

    # The sweep is in the job before any worker asks: log-spaced over the default range, at
    # two eps_root levels.
    sweep = warm_start_configs(SearchSpace(), 40)
    trials = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    assert [t["state"] for t in trials] == ["waiting"] * len(sweep)
    assert [t["params"] for t in trials] == sweep
    lrs = sorted({t["params"]["learning_rate"] for t in trials})
    assert math.isclose(lrs[0], 1e-5) and math.isclose(lrs[-1], 1.0)

    r = client.get(f"{url}/recommendation", headers=user.headers)
    assert r.status_code == 409 and "no recommendation" in r.json()["detail"]

    # The sweep is leased first, with its own parameters.
    first = run_trials(client, worker, len(sweep))
    assert [t["config"] for t in first] == sweep

    r = client.get(f"{url}/recommendation", headers=user.headers)
    assert r.status_code == 200, r.text
    provisional = r.json()
    assert provisional["status"] == "provisional"

    run_trials(client, worker, 100)
    job = client.get(url, headers=user.headers).json()
    assert job["status"] == "finished"

    r = client.get(f"{url}/recommendation", headers=user.headers)
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "final" and final["job_id"] == job_id
    lr, margin = final["learning_rate"], final["margin"]
    # Safe: a margin below the edge of the recommended eps_root, and never a diverged lr.
    assert lr <= edge(final["eps_root"]) / margin * 1.0001
    diverged_lrs = {
        t["params"]["learning_rate"]
        for t in client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
        if t["state"] == "diverged"
    }
    assert diverged_lrs and lr not in diverged_lrs
    # Good: within 10 % of the log range of the safe optimum (BEST_LR for eps_root 1e-8).
    target = min(BEST_LR, edge(final["eps_root"]) / margin)
    assert abs(math.log10(lr) - math.log10(target)) <= 0.1 * 5
    assert final["optax"].startswith("optax.contrib.acprop(learning_rate=")
    assert final["lr_interval"][0] <= lr <= final["lr_interval"][1]
    assert final["evidence"]["n_trials"] >= 30


def test_warm_start_can_be_switched_off(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    body = {"task": {"name": "rosenbrock"}, "budget": {"n_trials": 40}, "warm_start": False}
    job_id = client.post("/api/v1/jobs", json=body, headers=user.headers).json()["id"]
    trials = client.get(f"/api/v1/jobs/{job_id}/trials", headers=user.headers).json()["trials"]
    assert trials == []
