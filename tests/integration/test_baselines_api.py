"""Baselines through the real API, on SQLite and Postgres (issue #18, "Must show"): a job with
baselines ends with them in its recommendation, on the same seeds as its trials, beside ACProp
at the recommendation on those seeds; a job with ``"baselines": []`` has none; invalid
baselines are a 422 and store nothing; and baseline leases keep the broker's guarantees
(fencing, idempotent writes, tenant binding, write checks, release, the reaper).

The worker is synthetic (tests/support/api.py): trials answer with a known loss curve, each
reference optimizer with a fixed loss per seed, the check with the trials' curve.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta
from typing import Any

import optuna
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.broker import baseline_writes
from service.broker.workers import Sightings
from service.db.models import BaselineLease, KeyScope, utcnow
from tests.support.api import BASELINE_LOSSES, BEST_LR, baseline_result, synthetic_losses
from tests.support.databases import KeyFactory, count_rows

BUDGET = {"n_trials": 16, "steps": 20, "seeds": 2, "report_every": 5}


def _submit(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": "rosenbrock"}, "budget": BUDGET, "sampler": "random", **body},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


def _losses(config: dict[str, float], seeds: list[int], optimum: float) -> tuple[list[float], bool]:
    """The synthetic problem's losses (tests/support/api.py), its optimum moved to ``optimum``."""
    losses, diverged = synthetic_losses(config, seeds)
    shift = (math.log10(config["learning_rate"]) - math.log10(optimum)) ** 2
    base = (math.log10(config["learning_rate"]) - math.log10(BEST_LR)) ** 2
    return [v - base + shift for v in losses], diverged


def _drive(
    client: TestClient, worker: dict[str, str], optimum: float = BEST_LR
) -> list[tuple[str, dict[str, Any]]]:
    """A synthetic worker until no work is left; returns what it was handed, in order, as
    ("trial", trial) and ("baseline", run)."""
    handed: list[tuple[str, dict[str, Any]]] = []
    while True:
        r = client.post("/api/v1/leases", json={"worker_id": "w", "capacity": 4}, headers=worker)
        assert r.status_code == 200, r.text
        answer = r.json()
        results = []
        for lease in answer["leases"]:
            trial = lease["trial"]
            losses, diverged = _losses(trial["config"], trial["seeds"], optimum)
            results.append(
                {
                    "token": lease["token"],
                    "final_losses": losses,
                    "validation_losses": losses,
                    "diverged_at_step": [3 if diverged else None] * len(losses),
                }
            )
            handed.append(("trial", trial))
        for lease in answer["baselines"]:
            run = lease["run"]
            result = baseline_result(run, lease["token"])
            if run["optimizer"] == "acprop":  # the check: ACProp on the trials' problem
                losses, _ = _losses(run["settings"], run["seeds"], optimum)
                result.update(final_losses=losses, validation_losses=losses)
            results.append(result)
            handed.append(("baseline", run))
        if not results:
            return handed
        r = client.post("/api/v1/leases/complete", json={"results": results}, headers=worker)
        assert r.status_code == 200, r.text


def test_a_job_ends_with_its_baselines_on_the_same_seeds(
    client: TestClient, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    job = _submit(client, user.headers, seed=0)  # no "baselines": Adam 1e-3 and Prodigy
    url = f"/api/v1/jobs/{job['id']}"
    assert [(b["label"], b["state"]) for b in job["baselines"]] == [
        ("Adam 1e-3", "waiting"),
        ("Prodigy", "waiting"),
    ]

    handed = _drive(client, worker)
    job = client.get(url, headers=user.headers).json()
    assert job["status"] == "finished"

    # Not trials: the job has exactly its 16 trials, and its Optuna study too.
    trials = [t for kind, t in handed if kind == "trial"]
    runs = [r for kind, r in handed if kind == "baseline"]
    assert len(trials) == job["progress"]["n_trials"] == job["progress"]["finished"] == 16
    storage = client.app.state.studies.storage()  # type: ignore[attr-defined]
    assert len(optuna.load_study(study_name=job["study_name"], storage=storage).trials) == 16
    # Baselines go out only once no trial is left to hand out, never before a trial.
    first_run = next(i for i, (kind, _) in enumerate(handed) if kind == "baseline")
    assert all(kind == "baseline" for kind, _ in handed[first_run:])

    # The same seeds as every trial the sampler and the warm start made (confirmation
    # trials train fresh ones on purpose).
    job_seeds = {tuple(t["seeds"]) for t in trials if t["number"] < 13}
    assert job_seeds == {(0, 1)}
    assert [(r["optimizer"], r["seeds"], r["steps"]) for r in runs[:2]] == [
        ("adam", [0, 1], 20),
        ("prodigy", [0, 1], 20),
    ]
    assert runs[0]["settings"]["learning_rate"] == 1e-3

    rec = client.get(f"{url}/recommendation", headers=user.headers).json()
    assert rec["status"] == "final"
    # The recommendation sits between the trials on the job's seeds (a confirmation
    # candidate, trained on fresh seeds): the job trained it on the baselines' seeds.
    (check,) = [r for r in runs if r["kind"] == "check"]
    assert check is runs[-1] and check["optimizer"] == "acprop" and check["seeds"] == [0, 1]
    assert check["settings"] == {k: rec[k] for k in check["settings"]}
    assert rec["baselines"][0]["acprop_from"] == "check run"
    acprop, _ = _losses({k: rec[k] for k in ("learning_rate", "eps_root")}, [0, 1], BEST_LR)
    for b, name, label in zip(
        rec["baselines"], ("adam", "prodigy"), ("Adam 1e-3", "Prodigy"), strict=True
    ):
        losses = [BASELINE_LOSSES[name] + 0.001 * s for s in (0, 1)]
        assert (b["optimizer"], b["label"], b["state"], b["seeds"]) == (
            name,
            label,
            "complete",
            [0, 1],
        )
        assert b["validation_losses"] == pytest.approx(losses)
        assert b["validation_loss"] == pytest.approx(statistics.fmean(losses))
        assert b["seed_std"] == pytest.approx(statistics.stdev(losses))
        assert b["diverged_seeds"] == []
        assert b["acprop_validation_loss"] == pytest.approx(statistics.fmean(acprop))
        rd = (statistics.fmean(acprop) - statistics.fmean(losses)) / statistics.fmean(losses)
        assert b["relative_difference"] == pytest.approx(rd)
    assert rec["comparison"].startswith("ACProp at the recommendation: ")
    assert "Adam 1e-3" in rec["comparison"] and "Prodigy" in rec["comparison"]
    assert [b["state"] for b in job["baselines"]] == ["complete"] * len(job["baselines"])


def test_the_check_is_a_trial_that_trained_the_recommendation_on_those_seeds(
    client: TestClient, make_key: KeyFactory
) -> None:
    """Where the answer is the paper's setting (the loss is best at 1e-3), the warm start
    trained exactly it on the job's seeds: that trial is ACProp's side, and no check runs."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    job = _submit(client, user.headers, seed=0, baselines=[{"optimizer": "prodigy"}])
    handed = _drive(client, worker, optimum=1e-3)
    assert [r["optimizer"] for kind, r in handed if kind == "baseline"] == ["prodigy"]
    url = f"/api/v1/jobs/{job['id']}"
    assert client.get(url, headers=user.headers).json()["status"] == "finished"
    rec = client.get(f"{url}/recommendation", headers=user.headers).json()
    (b,) = rec["baselines"]
    number = int(b["acprop_from"].removeprefix("trial "))
    trials = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    (trial,) = [t for t in trials if t["number"] == number]
    assert trial["seeds"] is None  # the job's own seeds, the baselines'
    assert trial["params"] == {k: rec[k] for k in trial["params"]}
    assert trial["params"]["learning_rate"] == 1e-3
    assert b["acprop_validation_loss"] == pytest.approx(
        statistics.fmean(trial["validation_losses"])
    )
    assert b["relative_difference"] < 0 and "lower loss than Prodigy" in rec["comparison"]


def test_a_job_with_no_baselines_has_none(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    job = _submit(client, user.headers, baselines=[], budget={**BUDGET, "n_trials": 12})
    assert job["baselines"] == []
    handed = _drive(client, worker)
    assert {kind for kind, _ in handed} == {"trial"}
    url = f"/api/v1/jobs/{job['id']}"
    assert client.get(url, headers=user.headers).json()["status"] == "finished"
    rec = client.get(f"{url}/recommendation", headers=user.headers).json()
    assert rec["baselines"] == [] and rec["comparison"] is None


@pytest.mark.parametrize(
    ("baselines", "message"),
    [
        ([{"optimizer": "sgd"}], "does not match any of the expected tags"),
        ([{"learning_rate": 1e-3}], "Unable to extract tag"),
        ([{"optimizer": "adam", "learning_rate": 0}], "greater than 0"),
        ([{"optimizer": "adam", "learning_rate": 11}], "less than or equal to 10"),
        ([{"optimizer": "adam", "learning_rate": "1e-3"}], "valid number"),
        ([{"optimizer": "prodigy", "betas": [0.9, 0.99]}], "Extra inputs"),
        ([{"optimizer": "schedule_free_adamw", "warmup_steps": 2.5}], "valid integer"),
        ([{"optimizer": "adamw", "weight_decay": -1}], "greater than or equal to 0"),
        ([{"optimizer": "adam"}, {"optimizer": "adam", "learning_rate": 1e-3}], "listed twice"),
        ([{"optimizer": "prodigy"}] * 9, "at most 8"),
        ({"optimizer": "adam"}, "valid list"),
    ],
)
def test_invalid_baselines_are_422_and_store_nothing(
    client: TestClient, app: FastAPI, make_key: KeyFactory, baselines: Any, message: str
) -> None:
    user = make_key()
    before = count_rows(app)
    r = client.post(
        "/api/v1/jobs",
        json={"task": {"name": "rosenbrock"}, "baselines": baselines},
        headers=user.headers,
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][:2] == ["body", "baselines"] for d in detail), detail
    assert any(message in d["msg"] for d in detail), detail
    assert count_rows(app) == before


# -- the broker's guarantees, for baseline leases ---------------------------------------------


def _baseline_leases(
    client: TestClient, user: dict[str, str], worker: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    """A one-trial job with two baselines, its trial trained: the lease of its baselines."""
    job = _submit(
        client,
        user,
        warm_start=False,
        budget={**BUDGET, "n_trials": 1},
        baselines=[
            {"optimizer": "adam", "learning_rate": 3e-4},
            {"optimizer": "dadapt_adamw"},
            {"optimizer": "prodigy"},
        ],
    )
    r = client.post("/api/v1/leases", json={"worker_id": "w", "capacity": 4}, headers=worker)
    (lease,) = r.json()["leases"]
    assert r.json()["baselines"] == []
    done = {"token": lease["token"], "final_losses": [0.5, 0.5]}
    assert (
        client.post("/api/v1/leases/complete", json={"results": [done]}, headers=worker).status_code
        == 200
    )
    r = client.post("/api/v1/leases", json={"worker_id": "w", "capacity": 4}, headers=worker)
    assert r.json()["leases"] == []
    return job["id"], r.json()["baselines"]


def test_baseline_leases_are_fenced_checked_and_idempotent(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    other = make_key(scope=KeyScope.WORKER).headers  # another tenant's worker
    job_id, leases = _baseline_leases(client, user.headers, worker)
    # The one trial cannot support a recommendation: the check failed at once, with why.
    assert [le["run"]["optimizer"] for le in leases] == ["adam", "dadapt_adamw", "prodigy"]
    adam, dadapt, prodigy = leases
    assert adam["token"].startswith("lb_") and adam["run"]["settings"]["learning_rate"] == 3e-4
    url = f"/api/v1/jobs/{job_id}"
    job = client.get(url, headers=user.headers).json()
    assert job["status"] == "running"  # not finished while its baselines train
    check = job["baselines"][-1]
    assert (check["kind"], check["state"]) == ("check", "failed")

    def post(path: str, body: Any, headers: dict[str, str] = worker) -> Any:
        return client.post(f"/api/v1/leases{path}", json=body, headers=headers)

    before = count_rows(app)
    result = baseline_result(adam["run"], adam["token"])
    # Write checks: one value per seed.
    r = post("/complete", {"results": [{**result, "final_losses": [0.4]}]})
    assert r.status_code == 422 and "2 seeds" in r.text
    # ... and no more seconds than its lease has existed, as for a trial's.
    for field in ("wall_s", "compile_s"):
        r = post("/complete", {"results": [{**result, field: 3600.0}]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field
    # Tenant binding: another tenant's worker holds nothing here; made-up tokens neither.
    assert post("/complete", {"results": [result]}, other).status_code == 409
    made_up = {**result, "token": "lb_not-a-lease"}
    assert post("/complete", {"results": [made_up]}).json()["detail"]["lost"] == ["lb_not-a-lease"]
    # One call names one kind of lease; baseline runs send no reports.
    mixed = [result, {"token": "lt_x", "final_losses": [0.1, 0.1]}]
    assert post("/complete", {"results": mixed}).status_code == 422
    report = {"token": adam["token"], "step": 5, "losses": [0.1, 0.1]}
    assert post("/report", {"reports": [report]}).status_code == 422
    assert count_rows(app) == before

    tokens = [adam["token"], dadapt["token"]]
    assert post("/heartbeat", {"tokens": tokens}).json()["held"] == tokens
    assert post("/heartbeat", {"tokens": tokens}, other).json()["lost"] == tokens
    # Complete once; a repeat (a retried call) answers the same and changes nothing.
    assert post("/complete", {"results": [result]}).json() == {"accepted": [adam["token"]]}
    after = count_rows(app)
    assert post("/complete", {"results": [result]}).json() == {"accepted": [adam["token"]]}
    assert count_rows(app) == after
    assert post("/heartbeat", {"tokens": [adam["token"]]}).json()["lost"] == [adam["token"]]
    # A completed run's token cannot release it.
    assert post("/release", {"tokens": [adam["token"]]}).status_code == 409

    # A run its worker cannot build fails with the reason, once; a repeat answers the same.
    failure = {"failures": [{"token": prodigy["token"], "error": "ValueError: boom"}]}
    assert post("/fail", failure).json() == {"accepted": [prodigy["token"]]}
    assert post("/fail", failure).json() == {"accepted": [prodigy["token"]]}

    # Released: waiting again, the next attempt; the old token is dead.
    assert post("/release", {"tokens": [dadapt["token"]]}).json() == {"released": [dadapt["token"]]}
    assert post("/release", {"tokens": [dadapt["token"]]}).status_code == 200  # a repeat
    (again,) = post("", {"worker_id": "w", "capacity": 4}).json()["baselines"]
    assert (again["run"]["run_id"], again["run"]["attempt"]) == (dadapt["run"]["run_id"], 2)
    stale = baseline_result(dadapt["run"], dadapt["token"])
    assert post("/complete", {"results": [stale]}).status_code == 409

    # The reaper: an expired lease's run waits again (attempt + 1), and fails for good once
    # max_attempts (3) of its leases expired (a release is not counted); the job then
    # finishes without it.
    later = utcnow()
    for expired in (1, 2, 3):
        if expired < 3:
            later += timedelta(seconds=600)
            with app.state.session_factory() as session:
                assert baseline_writes.reap_expired(session, later) == 1
        else:  # the reaper thread's own pass, on a lease made to expire
            with app.state.session_factory() as session:
                session.execute(
                    update(BaselineLease)
                    .where(BaselineLease.ended_at.is_(None))
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )
                session.commit()
            app.state.broker.reaper.tick()
        job = client.get(url, headers=user.headers).json()
        if expired < 3:
            assert job["baselines"][1]["state"] == "waiting"
            (again,) = post("", {"worker_id": "w", "capacity": 4}).json()["baselines"]
            assert again["run"]["attempt"] == 2 + expired
    assert job["baselines"][1]["state"] == "failed"
    assert job["status"] == "finished"
    # No recommendation from one trial, but the job's baselines are what it ran.
    assert [b["state"] for b in job["baselines"]] == ["complete", "failed", "failed", "failed"]


def test_a_baseline_heartbeat_is_a_sighting_of_its_worker(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    """A worker training only baseline runs still shows as seen on the workers' roster."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    _, leases = _baseline_leases(client, user.headers, worker)
    app.state.broker.sightings = Sightings(every_s=0.0)  # write every sighting (no throttle)

    def last_seen() -> datetime:
        (row,) = client.get("/api/v1/workers", headers=user.headers).json()["workers"]
        return datetime.fromisoformat(row["last_seen_at"])

    before = last_seen()
    tokens = [le["token"] for le in leases]
    r = client.post("/api/v1/leases/heartbeat", json={"tokens": tokens}, headers=worker)
    assert r.json()["held"] == tokens
    assert last_seen() > before


def test_cancelling_a_job_ends_its_baseline_leases(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    job_id, leases = _baseline_leases(client, user.headers, worker)
    r = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=user.headers)
    assert r.json()["status"] == "cancelled"
    tokens = [le["token"] for le in leases]
    r = client.post("/api/v1/leases/heartbeat", json={"tokens": tokens}, headers=worker)
    assert r.json()["lost"] == tokens
    result = baseline_result(leases[0]["run"], tokens[0])
    r = client.post("/api/v1/leases/complete", json={"results": [result]}, headers=worker)
    assert r.status_code == 409
    job = client.get(f"/api/v1/jobs/{job_id}", headers=user.headers).json()
    assert [b["state"] for b in job["baselines"][:3]] == ["waiting"] * 3
    r = client.post("/api/v1/leases", json={"worker_id": "w", "capacity": 4}, headers=worker)
    assert r.json() == {"leases": [], "baselines": [], "retry_after_s": r.json()["retry_after_s"]}
    # Deleting the job deletes its runs and their leases.
    before = count_rows(app)
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=user.headers).status_code == 204
    after = count_rows(app)
    assert before["acprop_baseline_runs"] - after["acprop_baseline_runs"] == 4
    assert before["acprop_baseline_leases"] - after["acprop_baseline_leases"] == 3
