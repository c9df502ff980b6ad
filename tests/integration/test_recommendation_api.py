"""The warm-start sweep and the recommendation endpoint through the real API (issue #5).

A "worker" here does no training: it leases trials over the protocol and answers with the
losses of a synthetic problem whose optimum and divergence edge are known, so the test can
check where the recommendation lands. Runs on SQLite and Postgres.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from optimizer.space import SearchSpace
from optimizer.warm_start import warm_start_configs
from service.db.models import KeyScope, Trial
from service.job_recommendation import trial_record as _outcome
from tests.support.api import BEST_LR, LOCAL_VERSIONS, edge, run_trials
from tests.support.databases import KeyFactory, count_rows


def test_warm_start_sweep_then_recommendation(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    body = {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": 40, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "random",
        # Seeded, so the job is the same every run (its edge is a step in eps_root, 2e-3
        # below 1e-10 and 3e-2 above; tests/unit/test_recommendation.py checks 300 draws of
        # such a job stay a margin below it, docs/recommendation.md "Limits").
        "seed": 0,
    }
    r = client.post("/api/v1/jobs", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    url = f"/api/v1/jobs/{job_id}"

    # The sweep is in the job before any worker asks: log-spaced a decade apart around 1e-3,
    # at two eps_root levels, the second half a decade up.
    sweep = warm_start_configs(SearchSpace(), 40)
    trials = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    assert [t["state"] for t in trials] == ["waiting"] * len(sweep)
    assert [t["params"] for t in trials] == sweep
    lrs = sorted({t["params"]["learning_rate"] for t in trials})
    # 1e-5 ... 1e-1 at eps_root 1e-8, half a decade higher at 1e-16.
    assert lrs == pytest.approx([10.0 ** (-5 + k / 2) for k in range(10)])

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
    # Every trial came from one worker environment: its versions, and no warning.
    used = final["evidence"]["n_trials"]
    assert final["versions"] == [{**LOCAL_VERSIONS, "n_trials": used}]
    assert final["warnings"] == []


def test_warm_start_can_be_switched_off(client: TestClient, make_key: KeyFactory) -> None:
    user = make_key()
    body = {"task": {"name": "rosenbrock"}, "budget": {"n_trials": 40}, "warm_start": False}
    job_id = client.post("/api/v1/jobs", json=body, headers=user.headers).json()["id"]
    trials = client.get(f"/api/v1/jobs/{job_id}/trials", headers=user.headers).json()["trials"]
    assert trials == []


def test_per_seed_divergence_reaches_the_recommendation(
    client: TestClient, make_key: KeyFactory
) -> None:
    """Past the edge only one of two seeds diverges: the recommendation counts one diverged
    seed per diverged trial, not two."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    body = {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": 24, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "random",
    }
    r = client.post("/api/v1/jobs", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    url = f"/api/v1/jobs/{r.json()['id']}"
    run_trials(client, worker, 100, only_last_seed_diverges=True)

    trials = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    diverged = [t for t in trials if t["state"] == "diverged"]
    assert diverged and len(diverged) < len(trials)
    assert {tuple(t["seeds_diverged_at"]) for t in diverged} == {(None, 3)}
    r = client.get(f"{url}/recommendation", headers=user.headers)
    assert r.status_code == 200, r.text
    evidence = r.json()["evidence"]
    assert evidence["n_trials_diverged"] == len(diverged)
    assert evidence["n_seeds_diverged"] == len(diverged)


def _trial(state: str, seeds_diverged_at: list[int | None] | None, **kw: Any) -> Trial:
    return Trial(
        number=kw.pop("number", 0),
        params={"learning_rate": 1e-2},
        state=state,
        diverged_at_step=kw.pop("diverged_at_step", None),
        seeds_diverged_at=seeds_diverged_at,
        final_losses=kw.pop("final_losses", [0.4, None]),
        validation_losses=kw.pop("validation_losses", None),
        value=None,
    )


def test_outcome_takes_per_seed_flags_and_keeps_the_old_rule_without_them() -> None:
    # 1 of 2 seeds diverged: the other seed's finite loss stays a non-diverged seed.
    one = _outcome(_trial("diverged", [None, 7], diverged_at_step=7))
    assert one.losses == (0.4, None) and one.diverged == (False, True)
    assert one.seed_states() == ([0.4], 1, 0)
    assert _outcome(_trial("diverged", [5, 7], diverged_at_step=5)).diverged == (True, True)
    # A row from before per-seed storage: every seed of a diverged trial counts as diverged.
    old = _outcome(_trial("diverged", None, diverged_at_step=7))
    assert old.diverged == (True, True) and old.seed_states() == ([], 2, 0)
    # Per-seed steps that do not fit the row (another seed count, or no step although the
    # trial diverged) are not trusted either.
    assert _outcome(_trial("diverged", [None, 7, None])).diverged == (True, True)
    assert _outcome(_trial("diverged", [None, None])).diverged == (True, True)
    # A complete trial: no seed diverged, with or without per-seed steps.
    for per_seed in ([None, None], None):
        done = _outcome(_trial("complete", per_seed, final_losses=[0.4, 0.5]))
        assert done.diverged == (False, False)


def test_a_seeded_job_is_reproducible_and_bad_seeds_change_nothing(
    client: TestClient, app: FastAPI, make_key: KeyFactory
) -> None:
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    body: dict[str, Any] = {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": 24, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "tpe",
    }

    def run(extra: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, float]]]:
        r = client.post("/api/v1/jobs", json={**body, **extra}, headers=user.headers)
        assert r.status_code == 201, r.text
        leased = run_trials(client, worker, 100)  # one job at a time: all its trials
        return r.json(), [t["config"] for t in sorted(leased, key=lambda t: t["number"])]

    first, trials = run({"seed": 7})
    again, trials_again = run({"seed": 7})
    other, trials_other = run({"seed": 8})
    assert first["seed"] == again["seed"] == 7 and other["seed"] == 8
    assert len(trials) == 24 and trials_again == trials  # the same draws, trial by trial
    assert trials_other != trials  # the seed, not something else, fixes them
    unseeded, _ = run({})
    assert unseeded["seed"] is None

    before = count_rows(app)
    for bad in (-1, 2**32, 1.5, "7", [7], True):
        r = client.post("/api/v1/jobs", json={**body, "seed": bad}, headers=user.headers)
        assert r.status_code == 422, (bad, r.text)
        assert "seed" in r.text
    assert count_rows(app) == before


def test_the_confirmation_stage_trains_the_candidates_on_fresh_seeds_last(
    client: TestClient, make_key: KeyFactory
) -> None:
    """A job of 24 trials keeps its last 3 for the confirmation stage: they are leased only
    once every trial before them has finished, on the job's fresh seeds (2 and 3), and the
    answer is the best of them that no seed diverged, as they measured it."""
    user = make_key()
    worker = make_key(tenant=user.tenant, scope=KeyScope.WORKER).headers
    body = {
        "task": {"name": "rosenbrock"},
        "budget": {"n_trials": 24, "steps": 20, "seeds": 2, "report_every": 5},
        "sampler": "tpe",
        "seed": 3,
    }
    r = client.post("/api/v1/jobs", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    url = f"/api/v1/jobs/{r.json()['id']}"
    leased = run_trials(client, worker, 100, capacity=4)
    assert len(leased) == 24
    fresh = [t for t in leased if t["seeds"] != [0, 1]]
    assert 2 <= len(fresh) <= 3 and all(t["seeds"] == [2, 3] for t in fresh)
    # Numbered from 21 (the job's last 3 trials; a slot the candidates leave free is sampled
    # after them), and leased only after every trial before them (one worker: in the order
    # it got them).
    first = 24 - 3
    assert [t["number"] for t in fresh] == list(range(first, first + len(fresh)))
    start = leased.index(fresh[0])
    assert sorted(t["number"] for t in leased[:start]) == list(range(first))

    rows = client.get(f"{url}/trials?limit=100", headers=user.headers).json()["trials"]
    confirm = [t for t in rows if t["source"] == "confirmation"]
    assert [t["number"] for t in confirm] == [t["number"] for t in fresh]
    assert all(t["seeds"] == [2, 3] for t in confirm)
    assert all(t["seeds"] is None for t in rows if t["source"] != "confirmation")

    rec = client.get(f"{url}/recommendation", headers=user.headers).json()
    assert rec["status"] == "final"
    clean = [t for t in confirm if t["state"] == "complete"]
    assert clean, "a candidate below the edge trains cleanly"
    assert rec["bounded_by"] == "confirmation"
    best = min(clean, key=lambda t: sum(t["final_losses"]))
    assert rec["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    risk = rec["risk"]
    assert 0.0 <= risk["probability"] <= risk["upper_bound"] <= 1.0
    assert risk["n_diverged"] <= risk["n_seeds"]
