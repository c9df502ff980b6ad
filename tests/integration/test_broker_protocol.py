"""The worker protocol against the real API, on Postgres and SQLite (issue #4, service side).

A "worker" here does no training: it only makes the protocol's HTTP calls. Each test works in
its own tenant, so tests share one migrated database per module without seeing each other.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from optimizer.tuning.mirror import StudyMirror
from service.db.models import Lease, Trial
from service.settings import Settings
from tests.support.api import Api, db_state, job_body, result, running_app
from tests.support.databases import make_settings

TTL_S = 120.0  # no lease expires during these tests (tests/integration/test_broker_reaper.py)


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("data"), lease_ttl_s=TTL_S)


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Any]:
    with running_app(settings) as application:
        yield application


# -- the round trip ------------------------------------------------------------------------


def test_lease_report_complete_finishes_the_job_and_its_study(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=5, steps=20, report_every=10)
    leases = api.lease(8)
    assert len(leases) == 5  # never more than the budget
    assert sorted(le["trial"]["number"] for le in leases) == [0, 1, 2, 3, 4]
    assert {le["trial"]["job_id"] for le in leases} == {job["id"]}
    assert api.job(job["id"])["status"] == "running"
    assert api.lease(8) == []  # all trials are out

    tokens = [le["token"] for le in leases]
    for step in (10, 20):
        r = api.post(
            "/leases/report",
            {
                "reports": [
                    {"token": t, "step": step, "losses": [1.0 / step, 2.0 / step]} for t in tokens
                ]
            },
        )
        assert r.status_code == 200 and r.json() == {"stop": []}
    r = api.post(
        "/leases/complete", {"results": [result(t, 0.1 * i) for i, t in enumerate(tokens)]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == tokens

    assert api.job(job["id"])["status"] == "finished"
    state = db_state(app, job["id"])
    assert [t[2] for t in state["trials"]] == ["complete"] * 5
    assert all(t[6] is not None for t in state["trials"])  # optuna_trial_id recorded
    assert [le[2] for le in state["leases"]] == ["completed"] * 5
    assert len(state["optuna"]) == 5  # exactly one Optuna trial per finished trial
    assert {o[0] for o in state["optuna"]} == {t[0] for t in state["trials"]}
    for _, ostate, value, intermediate in state["optuna"]:
        assert ostate == "COMPLETE" and value is not None
        assert intermediate == pytest.approx({10: 0.15, 20: 0.075})


def test_only_worker_keys_may_use_the_protocol(app: Any) -> None:
    api = Api(app)
    r = api.post("/leases", {"worker_id": "w", "capacity": 1}, key=api.user_key)
    assert r.status_code == 403
    r = api.post("/leases", {"worker_id": "w", "capacity": 1}, key="acpt_not-a-key")
    assert r.status_code == 401


def test_no_work_answers_empty_with_a_retry_hint(app: Any) -> None:
    api = Api(app)
    r = api.post("/leases", {"worker_id": "w", "capacity": 4})
    assert r.status_code == 200
    assert r.json()["leases"] == [] and r.json()["retry_after_s"] > 0


# -- fencing -------------------------------------------------------------------------------


def test_stale_tokens_get_409_and_change_nothing(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4, steps=20, report_every=10)
    leases = api.lease(4)
    good, released, other = (le["token"] for le in leases[:3])
    assert api.post("/leases/release", {"tokens": [released]}).status_code == 200
    unknown = "lt_" + "x" * 43
    before = db_state(app, job["id"])

    for stale in (released, unknown):
        r = api.post(
            "/leases/report",
            {
                "reports": [
                    {"token": good, "step": 10, "losses": [1.0, 1.0]},
                    {"token": stale, "step": 10, "losses": [1.0, 1.0]},
                ]
            },
        )
        assert r.status_code == 409, r.text
        assert r.json()["detail"]["lost"] == [stale]
        r = api.post("/leases/complete", {"results": [result(good), result(stale)]})
        assert r.status_code == 409
        assert r.json()["detail"]["lost"] == [stale]
        if stale == unknown:  # (releasing a released lease again is a repeat, not stale)
            r = api.post("/leases/release", {"tokens": [other, stale]})
            assert r.status_code == 409
    assert db_state(app, job["id"]) == before

    # The heartbeat never answers 409: it says what is held and what is lost.
    r = api.post("/leases/heartbeat", {"tokens": [good, released, unknown]})
    assert r.status_code == 200
    assert r.json()["held"] == [good] and set(r.json()["lost"]) == {released, unknown}


# -- idempotency and reordering ------------------------------------------------------------


def _payloads(tokens: list[str], steps: int, every: int) -> tuple[list[dict], list[dict]]:
    reports = [
        {"reports": [{"token": t, "step": s, "losses": [i + 1.0 / s, i + 2.0 / s]}]}
        for i, t in enumerate(tokens)
        for s in range(every, steps + 1, every)
    ]
    # Batches of several trials, as a worker sends them, too.
    reports += [
        {
            "reports": [
                {"token": t, "step": every, "losses": [i + 1.0 / every, i + 2.0 / every]}
                for i, t in enumerate(tokens)
            ]
        }
    ]
    completes = [{"results": [result(t, 0.25 * i)]} for i, t in enumerate(tokens)]
    completes.append({"results": [result(t, 0.25 * i) for i, t in enumerate(tokens)]})
    return reports, completes


def _expected(state: dict[str, Any], n: int, steps: int, every: int) -> None:
    """The state a single in-order delivery of the payloads leaves."""
    assert [t[2] for t in state["trials"]] == ["complete"] * n
    values = sorted(t[4] for t in state["trials"])
    assert values == pytest.approx(sorted(0.25 * i for i in range(n)))
    assert len(state["reports"]) == n * (steps // every)
    assert [le[2] for le in state["leases"]] == ["completed"] * n
    assert len(state["optuna"]) == n
    for _, ostate, _, intermediate in state["optuna"]:
        assert ostate == "COMPLETE" and sorted(intermediate) == list(range(every, steps + 1, every))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeated_and_reordered_calls_leave_the_same_state(app: Any, seed: int) -> None:
    rng = random.Random(seed)
    api = Api(app)
    n, steps, every = 6, 40, 10
    job = api.submit(n_trials=n, steps=steps, report_every=every)
    tokens = [le["token"] for le in api.lease(n)]
    reports, completes = _payloads(tokens, steps, every)
    # Each call is sent 1-3 times (a retried HTTP call), in shuffled order; reports go before
    # the completions, as a worker sends them, and late duplicates of delivered reports
    # arrive after.
    sent_reports = [p for p in reports for _ in range(rng.randint(1, 3))]
    rng.shuffle(sent_reports)
    sent_completes = [p for p in completes for _ in range(rng.randint(1, 3))]
    rng.shuffle(sent_completes)
    late = rng.sample(reports, 4)
    answers: dict[str, set[str]] = {}
    for body in sent_reports + sent_completes + late:
        path = "/leases/complete" if "results" in body else "/leases/report"
        r = api.post(path, body)
        assert r.status_code == 200, r.text
        answers.setdefault(json.dumps(body, sort_keys=True), set()).add(r.text)
    # A repeated call got the same answer every time.
    assert all(len(a) == 1 for a in answers.values())
    state = db_state(app, job["id"])
    _expected(state, n, steps, every)
    assert api.job(job["id"])["status"] == "finished"


# -- non-finite losses ---------------------------------------------------------------------


NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def test_non_finite_losses_are_never_stored_as_complete_values(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=8, steps=20, report_every=10)
    tokens = [le["token"] for le in api.lease(8)]
    reports = [
        {"token": t, "step": 10, "losses": [NON_FINITE[i % 3], 1.0]} for i, t in enumerate(tokens)
    ]
    r = api.post("/leases/report", {"reports": reports})  # json.dumps writes NaN/Infinity
    assert r.status_code == 200, r.text
    results = []
    for i, t in enumerate(tokens):
        bad = NON_FINITE[i % 3]
        if i < 3:  # flagged by the worker, as the engine does
            results.append(
                result(
                    t,
                    final_losses=[bad, 1.0],
                    diverged_at_step=[7, None],
                    last_finite_losses=[3.0, 1.0],
                )
            )
        elif i < 6:  # not flagged: the server judges it anyway
            results.append(result(t, final_losses=[1.0, bad], validation_losses=[bad, bad]))
        elif i == 6:  # null (the worker's own encoding of a non-finite loss)
            results.append(result(t, final_losses=[None, 0.5], validation_losses=[None, 0.5]))
        else:  # finite results but a non-finite validation loss: value from the final losses
            results.append(result(t, final_losses=[0.5, 0.7], validation_losses=[bad, 0.1]))
    r = api.post("/leases/complete", {"results": results})
    assert r.status_code == 200, r.text

    state = db_state(app, job["id"])
    states = [t[2] for t in sorted(state["trials"], key=lambda t: t[1])]
    assert states == ["diverged"] * 7 + ["complete"]
    assert [t[5] for t in sorted(state["trials"], key=lambda t: t[1])][:3] == [7, 7, 7]
    for t in state["trials"]:
        assert t[4] is None or math.isfinite(t[4])
    for r_ in state["reports"]:
        assert all(v is None or math.isfinite(v) for v in r_[3])
    for _, ostate, value, intermediate in state["optuna"]:
        assert ostate in ("COMPLETE", "FAIL")
        assert value is None or math.isfinite(value)
        assert ostate != "COMPLETE" or value == pytest.approx(0.6)
        assert all(math.isfinite(v) for v in intermediate.values())
    # Nothing answers 5xx afterwards.
    headers = {"Authorization": f"Bearer {api.user_key}"}
    for path in (f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/trials", "/api/v1/jobs"):
        assert api.client.get(path, headers=headers).status_code < 500
    assert api.post("/leases", {"worker_id": "w", "capacity": 2}).status_code == 200
    assert api.post("/leases/heartbeat", {"tokens": tokens}).status_code == 200


def test_per_seed_divergence_is_stored_and_shown_in_the_trials_api(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=3, steps=20, report_every=10)
    leases = sorted(api.lease(3), key=lambda le: le["trial"]["number"])
    tokens = [le["token"] for le in leases]
    results = [
        # 1 of 2 seeds diverged, flagged by the worker at step 7.
        result(
            tokens[0],
            final_losses=[0.4, None],
            validation_losses=[0.4, None],
            diverged_at_step=[None, 7],
            last_finite_losses=[0.4, 2.0],
        ),
        # 1 of 2 seeds non-finite but not flagged: the server counts it at the last step.
        result(tokens[1], final_losses=[0.5, float("nan")]),
        result(tokens[2], 0.3),
    ]
    r = api.post("/leases/complete", {"results": results})
    assert r.status_code == 200, r.text

    expected = [
        ("diverged", 7, [None, 7]),
        ("diverged", 20, [None, 20]),
        ("complete", None, [None, None]),
    ]
    with app.state.session_factory() as s:
        rows = s.execute(
            select(Trial.state, Trial.diverged_at_step, Trial.seeds_diverged_at)
            .where(Trial.job_id == uuid.UUID(job["id"]))
            .order_by(Trial.number)
        ).all()
    assert [tuple(row) for row in rows] == expected

    headers = {"Authorization": f"Bearer {api.user_key}"}
    r = api.client.get(f"/api/v1/jobs/{job['id']}/trials", headers=headers)
    assert r.status_code == 200, r.text
    shown = [
        (t["state"], t["diverged_at_step"], t["seeds_diverged_at"]) for t in r.json()["trials"]
    ]
    assert shown == expected

    # A repeated completion answers the same and leaves the per-seed steps as they were.
    r = api.post("/leases/complete", {"results": results})
    assert r.status_code == 200, r.text
    again = api.client.get(f"/api/v1/jobs/{job['id']}/trials", headers=headers).json()["trials"]
    assert [t["seeds_diverged_at"] for t in again] == [e[2] for e in expected]


# -- the job's status ------------------------------------------------------------------------


def test_the_broker_moves_a_job_through_its_status_machine(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=2, steps=20, report_every=10)
    assert api.job(job["id"])["status"] == "queued"
    tokens = [le["token"] for le in api.lease(2)]
    running = api.job(job["id"])
    with app.state.session_factory() as s:
        leased_at = s.scalars(
            select(Lease.created_at)
            .join(Trial, Trial.id == Lease.trial_id)
            .where(Trial.job_id == uuid.UUID(job["id"]))
        ).all()
    # queued -> running, stamped with the lease decision's own time.
    assert running["status"] == "running" and running["finished_at"] is None
    assert {datetime.fromisoformat(running["started_at"])} == set(leased_at)

    r = api.post("/leases/complete", {"results": [result(t) for t in tokens]})
    assert r.status_code == 200, r.text
    finished = api.job(job["id"])
    assert finished["status"] == "finished"
    assert finished["started_at"] == running["started_at"]
    assert datetime.fromisoformat(finished["finished_at"]) >= max(leased_at)
    assert finished["cancelled_at"] is None and finished["error"] is None
    # A finished job cannot be cancelled any more (the same machine answers 409).
    headers = {"Authorization": f"Bearer {api.user_key}"}
    r = api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=headers)
    assert r.status_code == 409, r.text


def test_a_sampler_that_cannot_run_here_fails_the_job(app: Any, monkeypatch: Any) -> None:
    def missing_package(self: StudyMirror, n: int) -> Any:
        raise ImportError("No module named 'torch'")

    api = Api(app)
    job = api.submit(n_trials=2, steps=20, report_every=10)
    monkeypatch.setattr(StudyMirror, "ask", missing_package)
    assert api.lease(2) == []
    failed = api.job(job["id"])
    assert failed["status"] == "failed" and failed["started_at"] is None
    assert failed["finished_at"] is not None
    assert "cannot run on this server" in failed["error"] and "torch" in failed["error"]
    monkeypatch.undo()
    assert api.lease(2) == []  # a failed job hands out nothing
    assert api.job(job["id"]) == failed


# -- release and cancel --------------------------------------------------------------------


def test_release_returns_trials_with_the_same_params_and_costs_no_attempt(app: Any) -> None:
    api = Api(app)
    api.submit(n_trials=2, max_attempts=2)
    first = {le["trial"]["trial_id"]: le for le in api.lease(2)}
    for round_ in range(3):  # more releases than max_attempts: none of them counts
        tokens = [le["token"] for le in first.values()]
        for _ in range(2):  # a repeated release answers the same
            r = api.post("/leases/release", {"tokens": tokens})
            assert r.status_code == 200 and r.json()["released"] == tokens
        again = {le["trial"]["trial_id"]: le for le in api.lease(2)}
        assert set(again) == set(first)
        for tid, le in again.items():
            assert le["trial"]["config"] == first[tid]["trial"]["config"]
            assert le["trial"]["number"] == first[tid]["trial"]["number"]
            assert le["trial"]["attempt"] == round_ + 2
        first = again


def test_cancel_ends_leases_at_the_next_heartbeat_or_report(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=4)
    a, b, c = (le["token"] for le in api.lease(3))
    r = api.client.post(
        f"/api/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {api.user_key}"}
    )
    assert r.status_code == 200, r.text
    r = api.post("/leases/heartbeat", {"tokens": [a]})
    assert r.json()["held"] == [] and r.json()["lost"] == [a]
    for _ in range(2):  # and a repeated report answers the same
        r = api.post("/leases/report", {"reports": [{"token": b, "step": 5, "losses": [1.0, 1.0]}]})
        assert r.status_code == 200 and r.json()["stop"] == [b]
    assert api.post("/leases/complete", {"results": [result(c)]}).status_code == 409
    assert api.lease(4) == []  # a cancelled job hands out nothing
    state = db_state(app, job["id"])
    assert [le[2] for le in state["leases"]] == ["cancelled"] * 3
    assert api.job(job["id"])["status"] == "cancelled"


def test_a_cmaes_job_runs_to_the_end(app: Any) -> None:
    api = Api(app)
    body = {**job_body(n_trials=30), "sampler": "cmaes"}
    r = api.post("/jobs", body, key=api.user_key)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    for _ in range(30):
        leases = api.lease(4)
        if not leases:
            break
        r = api.post("/leases/complete", {"results": [result(le["token"]) for le in leases]})
        assert r.status_code == 200, r.text
    assert api.job(job_id)["status"] == "finished"


def test_gp_without_torch_is_refused_at_submission(app: Any, monkeypatch: Any) -> None:
    import service.schemas

    monkeypatch.setattr(service.schemas, "optional_package_available", lambda name: False)
    api = Api(app)
    r = api.post("/jobs", {**job_body(n_trials=30), "sampler": "gp"}, key=api.user_key)
    assert r.status_code == 422, r.text
    assert "sampler" in r.text and "PyTorch" in r.text


def test_the_jobs_pruner_stops_a_bad_trial_through_report(app: Any) -> None:
    api = Api(app)
    body = {**job_body(n_trials=10, steps=20, report_every=10), "pruner": "median"}
    r = api.post("/jobs", body, key=api.user_key)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    first = [le["token"] for le in api.lease(6)]
    for step in (10, 20):
        reports = [{"token": t, "step": step, "losses": [1.0, 1.0]} for t in first]
        assert api.post("/leases/report", {"reports": reports}).json() == {"stop": []}
    r = api.post("/leases/complete", {"results": [result(t, 1.0) for t in first]})
    assert r.status_code == 200
    bad, good = (le["token"] for le in api.lease(2))
    r = api.post(
        "/leases/report",
        {"reports": [
            {"token": bad, "step": 10, "losses": [50.0, 60.0]},
            {"token": good, "step": 10, "losses": [0.5, 0.5]},
        ]},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["stop"] == [bad]
    r = api.post("/leases/complete", {"results": [result(bad, 55.0, pruned=True), result(good)]})
    assert r.status_code == 200
    states = sorted(t[2] for t in db_state(app, job_id)["trials"])
    assert states == ["complete"] * 7 + ["pruned"]


def test_capacity_beyond_the_servers_limit_is_served_as_the_limit(app: Any) -> None:
    api = Api(app)
    limit = app.state.settings.max_lease_capacity
    body = {**job_body(n_trials=limit + 5, steps=10, report_every=5), "sampler": "random"}
    assert api.post("/jobs", body, key=api.user_key).status_code == 201
    assert len(api.lease(limit + 100)) == limit
    # The rest of the sampler's share; the confirmation stage's trials wait for those to end.
    from optimizer.tuning.confirmation import confirmation_trials

    assert len(api.lease(limit + 100)) == 5 - confirmation_trials(limit + 5)


def test_a_completion_stores_the_workers_versions_and_refuses_bad_ones(app: Any) -> None:
    api = Api(app)
    job = api.submit(n_trials=2, steps=20, report_every=10)
    first, second = api.lease(2)
    versions = {"jax": "0.10.2", "jaxlib": "0.10.2+cuda12", "optax": "0.2.8"}
    before = db_state(app, job["id"])
    for bad in (
        {**versions, "optax": "0.2.8\x00"},
        {**versions, "optax": "x" * 65},
        {"jax": "0.10.2", "jaxlib": "0.10.2"},  # one missing
        {**versions, "torch": "2.13.0"},  # not one of the three
        {**versions, "jax": 10},
    ):
        r = api.post("/leases/complete", {"results": [result(first["token"], versions=bad)]})
        assert r.status_code == 422, (bad, r.text)
    assert db_state(app, job["id"]) == before
    r = api.post("/leases/complete", {"results": [result(first["token"], versions=versions)]})
    assert r.status_code == 200, r.text
    r = api.post("/leases/complete", {"results": [result(second["token"])]})  # none sent
    assert r.status_code == 200, r.text
    with app.state.session_factory() as session:
        stored = {
            t.number: t.versions
            for t in session.scalars(select(Trial).where(Trial.job_id == uuid.UUID(job["id"])))
        }
    assert stored == {first["trial"]["number"]: versions, second["trial"]["number"]: None}
