"""NaN, +inf and -inf losses from workers (issue #4): never stored as COMPLETE values, no 5xx.

Real worker processes (tests/e2e/light_worker.py) send NaN / Infinity / -Infinity JSON
literals in their reports and completions, every trial of a job through a real API process on
Postgres. Afterwards no trial of ours and no trial of the Optuna study holds a non-finite value
(a COMPLETE trial in Optuna always has a finite one), and every endpoint still answers without
a 5xx.
"""

from __future__ import annotations

import math
import sys
import uuid

import httpx
import pytest

from tests.support.stack import Stack
from worker import journal

TASK = {"name": "rosenbrock", "options": {}}
BUDGET = {"n_trials": 16, "steps": 20, "seeds": 2, "report_every": 10}
LIGHT = [sys.executable, "-m", "tests.support.light_worker"]
MODES = ["nan", "inf", "-inf", "mixed"]


def finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@pytest.mark.slow
def test_non_finite_losses_are_never_complete_values(make_stack) -> None:  # type: ignore[no-untyped-def]
    stack: Stack = make_stack()
    job_id = stack.submit(TASK, budget=BUDGET)
    workers = [
        stack.worker(
            f"{mode}",
            f"--losses={mode}",  # with "=": argparse would take "-inf" for an option
            "--capacity",
            "3",
            "--idle-exit",
            "2",
            "--seed",
            str(i),
            command=LIGHT,
        )
        for i, mode in enumerate(MODES)
    ]
    for w in workers:
        w.start()
    job = stack.wait_finished(job_id, timeout_s=90)
    for w in workers:
        assert w.wait(timeout_s=30) == 0, w.logs()[-2000:]
    assert job["progress"]["finished"] == BUDGET["n_trials"]

    # Every non-finite report and completion was answered, never with a 5xx, and both kinds
    # of call carried each of NaN, +inf and -inf.
    calls = [e for w in workers for e in journal.read(str(w.journal)) if e["event"] == "raw_status"]
    assert all(c["status"] < 500 for c in calls), calls
    for path in ("/report", "/complete"):
        sent = set().union(*(set(c["kinds"]) for c in calls if c["path"] == path))
        assert sent == {"nan", "inf", "-inf"}, (path, sent)
    print(f"answers to non-finite writes: {sorted({(c['path'], c['status']) for c in calls})}")

    jid = uuid.UUID(job_id)
    trials = stack.db.rows(
        "SELECT state, value, last_finite_loss, final_losses, validation_losses "
        "FROM acprop_trials WHERE job_id = :j",
        j=jid,
    )
    for t in trials:
        if t["state"] == "complete":
            assert finite(t["value"]), t
        for column in ("value", "last_finite_loss"):
            assert t[column] is None or finite(t[column]), t
        for column in ("final_losses", "validation_losses"):
            assert all(x is None or finite(x) for x in t[column] or []), t
    for r in stack.db.rows(
        "SELECT r.losses FROM acprop_trial_reports r JOIN acprop_trials t ON t.id = r.trial_id "
        "WHERE t.job_id = :j",
        j=jid,
    ):
        assert all(x is None or finite(x) for x in r["losses"])

    # The Optuna study: no COMPLETE trial without a finite value, no non-finite value at all.
    study = {"name": job["study_name"]}
    optuna_trials = stack.db.rows(
        "SELECT t.trial_id, t.state, v.value FROM trials t JOIN studies s "
        "ON s.study_id = t.study_id LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
        "WHERE s.study_name = :name",
        **study,
    )
    assert len({t["trial_id"] for t in optuna_trials}) == BUDGET["n_trials"]
    for t in optuna_trials:
        assert t["value"] is None or finite(t["value"]), t
        if str(t["state"]).endswith("COMPLETE"):
            assert finite(t["value"]), t
    for r in stack.db.rows(
        "SELECT i.intermediate_value FROM trial_intermediate_values i JOIN trials t "
        "ON t.trial_id = i.trial_id JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name = :name",
        **study,
    ):
        assert r["intermediate_value"] is None or finite(r["intermediate_value"])

    # No endpoint answers 5xx afterwards.
    with stack.http() as user:
        for path in (
            "/api/v1/jobs",
            f"/api/v1/jobs/{job_id}",
            f"/api/v1/jobs/{job_id}/trials",
            f"/api/v1/jobs/{job_id}/recommendation",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            response = user.get(path)
            assert response.status_code < 500, (path, response.text)
            if path == f"/api/v1/jobs/{job_id}/trials":
                for trial in response.json()["trials"]:
                    assert trial["value"] is None or finite(trial["value"])
    with httpx.Client(
        base_url=stack.server.url, headers={"Authorization": f"Bearer {stack.worker_key}"}
    ) as w:
        assert (
            w.post("/api/v1/leases", json={"worker_id": "probe", "capacity": 2}).status_code < 500
        )
        assert w.post("/api/v1/leases/heartbeat", json={"tokens": ["lt_gone"]}).status_code < 500
    assert "Traceback" not in stack.server.log_tail(100_000)
