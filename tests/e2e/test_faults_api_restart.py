"""kill -9 of the API server 10 times during a job, restarted each time (issue #4).

Two real workers train a job while the only API process is SIGKILLed at random moments and
started again. Workers ride out the outages with retries; every write they got a 2xx for is in
their journal. At the end: every acknowledged report and completion is in the database, the
job's Optuna study and our trials and leases agree, and no trial finished twice.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter

import pytest

from tests.support.stack import Stack
from worker import journal

N_KILLS = 10
TASK = {"name": "rosenbrock", "options": {}}
SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "eps_root": {"value": 1e-8}}
# Sized so that the job outlasts the 10 kills even on an idle machine: 16 populations of 80
# report round trips over 2 workers, against about 3.5 s of server uptime between the kills.
BUDGET = {"n_trials": 64, "steps": 8000, "seeds": 2, "report_every": 100, "max_attempts": 10}
OPTUNA_STATE = {"complete": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL", "failed": "FAIL"}


@pytest.mark.slow
def test_kill_9_of_the_api_server_loses_no_acknowledged_write(make_stack) -> None:  # type: ignore[no-untyped-def]
    # A TTL longer than a restart: the outage itself should not cost the leases.
    stack: Stack = make_stack(lease_ttl_s=10)
    rng = random.Random(7)
    job_id = stack.submit(TASK, space=SPACE, budget=BUDGET, sampler="tpe")
    workers = [stack.worker(f"w{i}", "--capacity", "4", "--idle-exit", "60") for i in range(2)]
    for w in workers:
        w.start()
    # Let the workers get going (imports, compile) before the first kill.
    while not any(e["event"] == "report" for w in workers for e in journal.read(str(w.journal))):
        time.sleep(0.1)

    for _ in range(N_KILLS):
        time.sleep(rng.uniform(0.1, 0.6))
        assert stack.job(job_id)["status"] == "running", "the job ended before the kills did"
        stack.server.kill()
        time.sleep(rng.uniform(0.0, 0.5))
        stack.server.start()
    assert stack.server.starts == N_KILLS + 1

    job = stack.wait_finished(job_id, timeout_s=180)
    assert job["status"] == "finished"
    assert job["progress"]["finished"] == BUDGET["n_trials"]
    jid = uuid.UUID(job_id)
    events = [e for w in workers for e in journal.read(str(w.journal))]

    # Every report that got a 2xx is kept, with its losses.
    stored = {
        (r["trial_id"], r["attempt"], r["step"]): r["losses"]
        for r in stack.db.rows(
            "SELECT r.trial_id, r.attempt, r.step, r.losses FROM acprop_trial_reports r "
            "JOIN acprop_trials t ON t.id = r.trial_id WHERE t.job_id = :j",
            j=jid,
        )
    }
    acked = [e for e in events if e["event"] == "report"]
    assert len(acked) > 0
    for e in acked:
        key = (e["trial_id"], e["attempt"], e["step"])
        assert key in stored, key
        for sent, kept in zip(e["losses"], stored[key], strict=True):
            assert (sent is None and kept is None) or math.isclose(sent, kept, rel_tol=1e-12)

    # Every completion that got a 2xx is the trial's kept result, and none was accepted twice.
    trials = {
        t["id"]: t
        for t in stack.db.rows(
            "SELECT id, number, state, attempt, optuna_trial_id FROM acprop_trials "
            "WHERE job_id = :j",
            j=jid,
        )
    }
    completes = Counter(e["trial_id"] for e in events if e["event"] == "complete")
    assert max(completes.values()) == 1
    for e in events:
        if e["event"] == "complete":
            trial = trials[e["trial_id"]]
            assert trial["state"] in ("complete", "pruned", "diverged")
            assert trial["attempt"] == e["attempt"]

    # Leases: none left live; each finished trial ended exactly one lease as `completed`, the
    # one of its final attempt.
    leases = stack.db.rows(
        "SELECT l.trial_id, l.attempt, l.ended_at, l.end_reason FROM acprop_leases l "
        "JOIN acprop_trials t ON t.id = l.trial_id WHERE t.job_id = :j",
        j=jid,
    )
    assert all(lease["ended_at"] is not None for lease in leases)
    completed = Counter(lease["trial_id"] for lease in leases if lease["end_reason"] == "completed")
    for trial in trials.values():
        if trial["state"] == "failed":
            assert completed[trial["id"]] == 0
            continue
        assert completed[trial["id"]] == 1, trial
        (final,) = [
            lease
            for lease in leases
            if lease["trial_id"] == trial["id"] and lease["end_reason"] == "completed"
        ]
        assert final["attempt"] == trial["attempt"]

    # Optuna: exactly one stored trial per finished trial, in the matching state.
    optuna_trials = {
        r["trial_id"]: r
        for r in stack.db.rows(
            "SELECT t.trial_id, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = :name",
            name=job["study_name"],
        )
    }
    assert len(optuna_trials) == BUDGET["n_trials"]
    linked = [t["optuna_trial_id"] for t in trials.values()]
    assert sorted(linked) == sorted(optuna_trials)
    for trial in trials.values():
        state = optuna_trials[trial["optuna_trial_id"]]["state"]
        assert str(state).rsplit(".", 1)[-1] == OPTUNA_STATE[trial["state"]], trial
    print(
        f"{len(acked)} acknowledged reports, {sum(completes.values())} completions, "
        f"{sum(1 for e in events if e['event'] == 'lost')} lost leases, "
        f"attempts {Counter(t['attempt'] for t in trials.values())}"
    )
